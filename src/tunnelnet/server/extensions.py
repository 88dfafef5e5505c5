"""The Neutron API extensions tunnelnet implements, as `GET /v2.0/extensions` lists them.

Clients decide what to send from this list (`openstack port create` asks for some aliases
before it sends their attributes), so it holds exactly what tunnelnet serves: an alias here
is a promise, and anything tunnelnet lacks (routers, security groups, DNS, QoS, tags, ...)
has none. The aliases, names and timestamps are Neutron's (neutron-lib's API definitions).
"""

from __future__ import annotations

from dataclasses import dataclass

from tunnelnet.server.errors import NotFound


@dataclass(frozen=True, slots=True)
class Extension:
    alias: str
    name: str
    description: str
    updated: str

    def as_dict(self) -> dict[str, object]:
        return {
            "alias": self.alias,
            "name": self.name,
            "description": self.description,
            "updated": self.updated,
            "links": [],
        }


EXTENSIONS: tuple[Extension, ...] = (
    Extension("agent", "agent", "The agent management extension (agents register and report "
              "through tunnelnet's own POST /v2.0/agents and heartbeat).",
              "2013-02-03T10:00:00-00:00"),
    Extension("allowed-address-pairs", "Allowed Address Pairs",
              "Provides allowed address pairs (stored; enforced with port security).",
              "2013-07-23T10:00:00-00:00"),
    Extension("binding", "Port Binding", "Expose port bindings of a virtual port to external "
              "application (vnic_type normal only).", "2014-02-03T10:00:00-00:00"),
    Extension("filter-validation", "Filter parameters validation",
              "Unknown filter names are refused with a 400 naming them.",
              "2018-03-21T10:00:00-00:00"),
    Extension("net-mtu", "Network MTU", "Provides MTU attribute for a network resource.",
              "2015-03-25T10:00:00-00:00"),
    Extension("net-mtu-writable", "Network MTU (writable)",
              "Provides a writable MTU attribute for a network resource.",
              "2017-07-12T00:00:00-00:00"),
    Extension("pagination", "Pagination support", "Extension that indicates that pagination "
              "(limit and marker) is enabled.", "2016-06-12T00:00:00-00:00"),
    Extension("port-security", "Port Security", "Provides port security.",
              "2012-07-23T10:00:00-00:00"),
    Extension("project-id", "project_id field enabled",
              "Extension that indicates that project_id field is enabled.",
              "2016-09-09T09:09:09-09:09"),
    Extension("provider", "Provider Network", "Expose mapping of virtual networks to physical "
              "networks (vxlan, gre, geneve, vlan, flat, local).", "2012-09-07T10:00:00-00:00"),
    Extension("segment", "Segment", "Segments of networks, read-only: one per network, the "
              "one its provider attributes name.", "2016-02-24T17:00:00-00:00"),
    Extension("sorting", "Sorting support",
              "Extension that indicates that sorting is enabled.", "2016-06-12T00:00:00-00:00"),
    Extension("standard-attr-description", "standard-attr-description",
              "Extension to add descriptions to standard attributes",
              "2016-02-10T10:00:00-00:00"),
    Extension("standard-attr-revisions", "Resource revision numbers",
              "This extension will display the revision number of neutron resources.",
              "2016-04-11T10:00:00-00:00"),
    Extension("standard-attr-timestamp", "Resource timestamps",
              "Adds created_at and updated_at fields to all Neutron resources that have "
              "Neutron standard attributes.", "2016-09-12T10:00:00-00:00"),
)  # fmt: skip
BY_ALIAS = {e.alias: e for e in EXTENSIONS}


def listing() -> list[dict[str, object]]:
    return [e.as_dict() for e in EXTENSIONS]


def show(alias: str) -> dict[str, object]:
    found = BY_ALIAS.get(alias)
    if found is None:
        raise NotFound(f"Extension with alias {alias} does not exist", "ExtensionNotFound")
    return found.as_dict()
