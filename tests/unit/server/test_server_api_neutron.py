"""What Neutron's clients rely on, at the HTTP level: the error shape, version discovery,
the extension list, numbers sent as text, the standard attributes (accepted and stored, or
refused with the reason), `fields=`, subnet gateway and pool updates, segments, noauth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from support.controller import ADMIN_TOKEN, ServerProcess
from tunnelnet.api import ClientError
from tunnelnet.client import Client
from tunnelnet.client.http import _error


def _call(server: ServerProcess, method: str, path: str, body: Any = None,
          token: str | None = ADMIN_TOKEN) -> httpx.Response:  # fmt: skip
    headers = {"X-Auth-Token": token} if token else {}
    return httpx.request(method, server.url + path, json=body, headers=headers, timeout=10)


def _neutron_error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"NeutronError"}
    error: dict[str, str] = body["NeutronError"]
    assert set(error) == {"type", "message", "detail"}
    assert "Extra inputs" not in error["message"]
    return error


# -- the error shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "token", "status", "error_type"),
    [
        ("POST", "/v2.0/networks", {"network": {"mtu": "x"}}, ADMIN_TOKEN, 400, "InvalidInput"),
        ("GET", "/v2.0/networks/nope", None, ADMIN_TOKEN, 404, "NetworkNotFound"),
        ("GET", "/v2.0/networks", None, None, 401, "Unauthorized"),
        ("GET", "/v2.0/nothing-here", None, ADMIN_TOKEN, 404, "NotFound"),
        ("PATCH", "/v2.0/networks", None, ADMIN_TOKEN, 405, "MethodNotAllowed"),
        ("GET", "/v2.0/extensions/security-group", None, ADMIN_TOKEN, 404, "ExtensionNotFound"),
    ],
)  # fmt: skip
def test_every_error_has_neutrons_shape(
    server: ServerProcess, method: str, path: str, body: Any, token: str | None, status: int,
    error_type: str,
) -> None:  # fmt: skip
    error = _neutron_error(_call(server, method, path, body, token), status)
    assert error["type"] == error_type
    assert error["message"]


def test_the_client_reads_neutrons_shape_and_the_old_one() -> None:
    request = httpx.Request("GET", "http://x/v2.0/ports")
    for body in ({"NeutronError": {"type": "PortNotFound", "message": "gone", "detail": ""}},
                 {"error": {"type": "PortNotFound", "message": "gone"}}):  # fmt: skip
        error = _error(httpx.Response(404, json=body, request=request))
        assert isinstance(error, ClientError)
        assert (error.status, error.error_type, error.message) == (404, "PortNotFound", "gone")


def test_the_client_raises_the_servers_type_and_message(admin: Client) -> None:
    with pytest.raises(ClientError) as err:
        admin.create("network", mtu=100000)
    assert (err.value.status, err.value.error_type) == (400, "InvalidInput")
    assert "the maximum is 1450" in err.value.message


# -- discovery ---------------------------------------------------------------------------


def test_version_discovery_needs_no_token_and_links_to_v2(server: ServerProcess) -> None:
    versions = _call(server, "GET", "/", token=None).json()["versions"]
    assert [(v["id"], v["status"]) for v in versions] == [("v2.0", "CURRENT")]
    assert versions[0]["links"] == [{"rel": "self", "href": f"{server.url}/v2.0/"}]
    for path in ("/v2.0", "/v2.0/"):
        resources = _call(server, "GET", path, token=None).json()["resources"]
        by_name = {r["name"]: r for r in resources}
        assert {"network", "subnet", "port", "segment", "extension"} <= set(by_name)
        assert by_name["port"]["collection"] == "ports"
        assert by_name["port"]["links"] == [{"rel": "self", "href": f"{server.url}/v2.0/ports"}]


def test_extensions_list_and_show_by_alias(server: ServerProcess) -> None:
    listed = _call(server, "GET", "/v2.0/extensions").json()["extensions"]
    aliases = {e["alias"] for e in listed}
    assert {"provider", "net-mtu", "port-security", "allowed-address-pairs", "binding",
            "segment"} <= aliases  # fmt: skip
    # what tunnelnet lacks is not announced
    assert not {"router", "security-group", "external-net", "dhcp_agent_scheduler",
                "standard-attr-tag", "qos", "dns-integration"} & aliases  # fmt: skip
    shown = _call(server, "GET", "/v2.0/extensions/provider").json()["extension"]
    assert shown == next(e for e in listed if e["alias"] == "provider")
    assert set(shown) == {"alias", "name", "description", "updated", "links"}


# -- numbers and booleans as text ---------------------------------------------------------


def test_numbers_and_booleans_sent_as_text_are_converted(server: ServerProcess) -> None:
    response = _call(server, "POST", "/v2.0/networks", {"network": {
        "provider:network_type": "vxlan", "provider:segmentation_id": "6123", "mtu": "1400",
        "admin_state_up": "false", "port_security_enabled": "False"}})  # fmt: skip
    assert response.status_code == 201, response.text
    net = response.json()["network"]
    assert (net["provider:segmentation_id"], net["mtu"]) == (6123, 1400)
    assert (net["admin_state_up"], net["port_security_enabled"]) == (False, False)
    response = _call(server, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net["id"], "cidr": "10.60.0.0/24", "ip_version": "4",
        "enable_dhcp": "0"}})  # fmt: skip
    assert response.status_code == 201, response.text
    assert (response.json()["subnet"]["ip_version"], response.json()["subnet"]["enable_dhcp"]) == (
        4, False)  # fmt: skip
    response = _call(server, "PUT", f"/v2.0/networks/{net['id']}", {"network": {"mtu": "1300"}})
    assert response.json()["network"]["mtu"] == 1300
    error = _neutron_error(_call(server, "PUT", f"/v2.0/networks/{net['id']}",
                                 {"network": {"mtu": "1300.5"}}), 400)  # fmt: skip
    assert error["message"].startswith("invalid input for network.mtu")


@pytest.mark.parametrize(
    ("network_type", "mtu", "needle"),
    [
        ("vxlan", 1451, "the maximum is 1450"),
        ("gre", 1459, "the maximum is 1458"),
        ("geneve", 1451, "the maximum is 1450"),
        ("vlan", 1501, "the maximum is 1500"),
        ("vxlan", 67, "the minimum is 68"),
    ],
)
def test_an_mtu_over_the_types_maximum_is_refused_naming_it(
    server: ServerProcess, network_type: str, mtu: int, needle: str
) -> None:
    body = {"network": {"provider:network_type": network_type, "mtu": mtu}}
    assert needle in _neutron_error(_call(server, "POST", "/v2.0/networks", body), 400)["message"]


# -- standard attributes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v2.0/networks", {"network": {"router:external": True}},
         "router:external true is not supported: tunnelnet has no routers"),
        ("/v2.0/ports", {"port": {"network_id": "NET", "binding:vnic_type": "direct"}},
         "binding:vnic_type 'direct' is not supported"),
        ("/v2.0/ports", {"port": {"network_id": "NET", "security_groups": ["default"]}},
         "security_groups must be empty: tunnelnet has no security groups yet"),
        ("/v2.0/subnets", {"subnet": {"network_id": "NET", "cidr": "fd00:1::/64",
                                      "ipv6_ra_mode": "slaac"}},
         "ipv6_ra_mode 'slaac' is not supported"),
        ("/v2.0/subnets", {"subnet": {"network_id": "NET", "cidr": "fd00:1::/64",
                                      "ipv6_address_mode": "dhcpv6-stateful"}},
         "ipv6_address_mode 'dhcpv6-stateful' is not supported"),
        ("/v2.0/subnets", {"subnet": {"network_id": "NET", "cidr": "10.61.0.0/24",
                                      "host_routes": [{"destination": "10.9.0.0/16",
                                                       "nexthop": "10.62.0.1"}]}},
         "host_routes[0].nexthop 10.62.0.1 is not in 10.61.0.0/24"),
        ("/v2.0/ports", {"port": {"network_id": "NET", "allowed_address_pairs": [
            {"ip_address": "10.0.0.300"}]}}, "is not an IP address or CIDR"),
        ("/v2.0/networks", {"network": {"colour": "red", "dns_domain": "x."}},
         "Unrecognized attribute(s) 'network.colour', 'network.dns_domain'"),
        ("/v2.0/networks", {"networks": [{"name": "a"}, {"qos_policy_id": "q"}]},
         "Unrecognized attribute(s) 'networks.1.qos_policy_id'"),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_refused_with_the_reason(
    server: ServerProcess, admin: Client, path: str, body: dict[str, Any], needle: str
) -> None:
    net = admin.create("network", name="refusals")
    wrapper = next(iter(body))
    if isinstance(body[wrapper], dict):
        body = {wrapper: {k: net["id"] if v == "NET" else v for k, v in body[wrapper].items()}}
    error = _neutron_error(_call(server, "POST", path, body), 400)
    assert needle in error["message"]
    assert admin.list("port", network_id=net["id"]) == []  # nothing was stored
    admin.delete("network", net["id"])


def test_standard_attributes_are_stored_and_shown(admin: Client, tenant_a: Client) -> None:
    net = admin.create("network", name="attrs", port_security_enabled=False, shared=False,
                       **{"router:external": False})  # fmt: skip
    assert (net["port_security_enabled"], net["shared"], net["router:external"]) == (
        False, False, False)  # fmt: skip
    admin.create("subnet", network_id=net["id"], cidr="10.62.0.0/24",
                 host_routes=[{"destination": "10.9.0.0/16", "nexthop": "10.62.0.254"}])
    # a port takes its network's port security unless it says otherwise
    plain = admin.create("port", network_id=net["id"])
    assert plain["port_security_enabled"] is False
    assert (plain["binding:vnic_type"], plain["binding:vif_type"]) == ("normal", "unbound")
    assert plain["security_groups"] == [] and plain["allowed_address_pairs"] == []
    guarded = admin.create(
        "port", network_id=net["id"], port_security_enabled=True, security_groups=[],
        allowed_address_pairs=[{"ip_address": "10.62.0.100"},
                               {"ip_address": "10.62.0.96/28", "mac_address": "FA:16:3E:00:00:01"}],
        **{"binding:host_id": "hv1", "binding:vnic_type": "normal",
           "binding:profile": {"migrating_to": "hv2"}},
    )  # fmt: skip
    shown = admin.show("port", guarded["id"])
    assert shown["allowed_address_pairs"] == [
        {"ip_address": "10.62.0.100", "mac_address": guarded["mac_address"]},
        {"ip_address": "10.62.0.96/28", "mac_address": "fa:16:3e:00:00:01"},
    ]
    assert (shown["binding:vif_type"], shown["binding:profile"]) == ("ovs", {"migrating_to": "hv2"})
    with pytest.raises(ClientError, match="port security must be enabled") as err:
        admin.update("port", guarded["id"], port_security_enabled=False)
    assert (err.value.status, err.value.error_type) == (409, "AddressPairAndPortSecurityRequired")
    updated = admin.update("port", guarded["id"], allowed_address_pairs=[],
                           port_security_enabled=False)  # fmt: skip
    assert (updated["allowed_address_pairs"], updated["port_security_enabled"]) == ([], False)
    subnet = admin.list("subnet", network_id=net["id"])[0]
    assert subnet["host_routes"] == [{"destination": "10.9.0.0/16", "nexthop": "10.62.0.254"}]
    assert (subnet["ipv6_address_mode"], subnet["ipv6_ra_mode"]) == (None, None)
    mine = tenant_a.create("network", name="mine")
    theirs = tenant_a.create("port", network_id=mine["id"])
    with pytest.raises(ClientError, match="only admin may set binding:profile"):
        tenant_a.update("port", theirs["id"], **{"binding:profile": {"x": 1}})
    for port in (plain, guarded):
        admin.delete("port", port["id"])
    admin.delete("network", net["id"])


# -- fields=, subnet updates, segments ------------------------------------------------------


def test_a_shared_network_is_seen_and_used_by_every_project_but_changed_by_its_own(
    server: ServerProcess, admin: Client, tenant_a: Client, tenant_b: Client
) -> None:
    with pytest.raises(ClientError, match="only admin may share a network") as err:
        tenant_a.create("network", name="mine-for-all", shared=True)
    assert err.value.status == 403
    net = admin.create("network", name="public-ish", shared=True)
    assert net["shared"] is True
    sub = admin.create("subnet", network_id=net["id"], cidr="10.64.0.0/24")
    # every project sees it and its subnet, and attaches its own ports
    assert net["id"] in {n["id"] for n in tenant_a.list("network")}
    assert tenant_b.show("subnet", sub["id"])["cidr"] == "10.64.0.0/24"
    assert [s["id"] for s in tenant_b.list("subnet", network_id=net["id"])] == [sub["id"]]
    port = tenant_a.create("port", network_id=net["id"])
    assert port["project_id"] == tenant_a.show("port", port["id"])["project_id"] != "admin"
    assert port["fixed_ips"][0]["subnet_id"] == sub["id"]
    assert port["id"] not in {p["id"] for p in tenant_b.list("port")}  # ports stay private
    # but only its project (or admin) changes it
    for attempt in (lambda: tenant_a.update("network", net["id"], name="mine now"),
                    lambda: tenant_a.delete("network", net["id"]),
                    lambda: tenant_a.create("subnet", network_id=net["id"], cidr="10.65.0.0/24"),
                    lambda: tenant_a.update("subnet", sub["id"], name="x"),
                    lambda: tenant_a.delete("subnet", sub["id"])):  # fmt: skip
        with pytest.raises(ClientError, match="shared with you to use, not to change") as err:
            attempt()
        assert err.value.status == 403
    with pytest.raises(ClientError, match="cannot stop being shared") as err:
        admin.update("network", net["id"], shared=False)
    assert (err.value.status, err.value.error_type) == (409, "InvalidSharedSetting")
    tenant_a.delete("port", port["id"])
    assert admin.update("network", net["id"], shared=False)["shared"] is False
    with pytest.raises(ClientError) as err:
        tenant_b.show("network", net["id"])
    assert err.value.status == 404  # unshared: gone from other projects' view
    admin.delete("network", net["id"])


def test_a_shared_networks_subnets_reach_every_projects_watch_but_not_its_ports(
    server: ServerProcess, admin: Client, tenant_a: Client, tenant_b: Client
) -> None:
    # what a project may list (the shared network and its subnets, not other projects' ports)
    # is what its watch stream and long poll carry
    start = tenant_b.list_with_revision("network")[1]
    net = admin.create("network", name="watched-shared", shared=True)
    sub = admin.create("subnet", network_id=net["id"], cidr="10.66.0.0/24")
    port = tenant_a.create("port", network_id=net["id"])
    private = tenant_a.create("network", name="a-only")
    private_sub = tenant_a.create("subnet", network_id=private["id"], cidr="10.67.0.0/24")
    admin.update("subnet", sub["id"], name="renamed")
    listed = {d["id"] for kind in ("network", "subnet", "port") for d in tenant_b.list(kind)}
    streamed = [(e.resource, e.action, e.object["id"])
                for e in tenant_b.watch(since=start, timeout=1.0)
                if e.type == "event" and e.object]
    polled, _ = tenant_b.events(start, timeout=0.5)
    assert streamed == [("network", "create", net["id"]), ("subnet", "create", sub["id"]),
                        ("network", "update", net["id"]),  # it gained its subnet
                        ("subnet", "update", sub["id"])]
    assert [(e.resource, e.action, e.object["id"]) for e in polled if e.object] == streamed
    assert {i for _, _, i in streamed} <= listed
    assert not {port["id"], private["id"], private_sub["id"]} & {i for _, _, i in streamed}
    tenant_a.delete("port", port["id"])
    admin.delete("network", net["id"])


def test_unknown_names_in_fields_are_ignored(server: ServerProcess, admin: Client) -> None:
    net = admin.create("network", name="fields")
    response = _call(server, "GET", "/v2.0/networks?fields=id&fields=dns_domain&fields=mtu")
    assert {"id": net["id"], "mtu": 1450} in response.json()["networks"]
    response = _call(server, "GET", f"/v2.0/networks/{net['id']}?fields=name,qos_policy_id")
    assert response.json() == {"network": {"name": "fields"}}
    # unknown filters stay an error (Neutron's filter validation)
    assert "unknown network filter" in _neutron_error(
        _call(server, "GET", "/v2.0/networks?colour=red"), 400)["message"]  # fmt: skip
    admin.delete("network", net["id"])


def test_subnet_gateway_and_pools_can_change_but_not_onto_a_port(admin: Client) -> None:
    net = admin.create("network", name="gw")
    sub = admin.create("subnet", network_id=net["id"], cidr="10.63.0.0/24",
                       allocation_pools=[{"start": "10.63.0.10", "end": "10.63.0.20"}])
    port = admin.create("port", network_id=net["id"])
    held = port["fixed_ips"][0]["ip_address"]
    assert held == "10.63.0.10"
    with pytest.raises(ClientError, match=f"gateway_ip {held} is already allocated") as err:
        admin.update("subnet", sub["id"], gateway_ip=held)
    assert (err.value.status, err.value.error_type) == (409, "GatewayIpInUse")
    with pytest.raises(ClientError, match="is inside allocation pool"):
        admin.update("subnet", sub["id"], gateway_ip="10.63.0.15")
    changed = admin.update("subnet", sub["id"], gateway_ip="10.63.0.254",
                           allocation_pools=[{"start": "10.63.0.100", "end": "10.63.0.101"}])
    assert changed["gateway_ip"] == "10.63.0.254"
    assert changed["allocation_pools"] == [{"start": "10.63.0.100", "end": "10.63.0.101"}]
    # the port keeps its address; new ports come from the new pool
    assert admin.show("port", port["id"])["fixed_ips"][0]["ip_address"] == held
    assert admin.create("port", network_id=net["id"])["fixed_ips"][0]["ip_address"] == (
        "10.63.0.100")  # fmt: skip
    assert admin.update("subnet", sub["id"], gateway_ip=None)["gateway_ip"] is None
    for p in admin.list("port", network_id=net["id"]):
        admin.delete("port", p["id"])
    admin.delete("network", net["id"])


def test_segments_are_listed_one_per_network_and_scoped_like_networks(
    server: ServerProcess, admin: Client, tenant_a: Client
) -> None:
    net = admin.create("network", **{"provider:network_type": "gre",
                                     "provider:segmentation_id": 777})  # fmt: skip
    found = _call(server, "GET", f"/v2.0/segments?network_id={net['id']}").json()["segments"]
    assert len(found) == 1
    segment = found[0]
    assert (segment["network_type"], segment["physical_network"], segment["segmentation_id"],
            segment["network_id"]) == ("gre", None, 777, net["id"])  # fmt: skip
    again = _call(server, "GET", f"/v2.0/segments/{segment['id']}").json()["segment"]
    assert again == segment  # the id is stable
    assert _call(server, "GET", "/v2.0/segments?network_type=gre&segmentation_id=777"
                 ).json()["segments"] == [segment]  # fmt: skip
    assert _neutron_error(_call(server, "GET", "/v2.0/segments/nope"), 404)["type"] == (
        "SegmentNotFound")  # fmt: skip
    # a project sees the segments of its own networks only
    own = tenant_a.create("network", name="own")
    response = _call(server, "GET", "/v2.0/segments", token=tenant_a.token)
    assert [s["network_id"] for s in response.json()["segments"]] == [own["id"]]
    assert _call(server, "GET", f"/v2.0/segments/{segment['id']}",
                 token=tenant_a.token).status_code == 404  # fmt: skip
    admin.delete("network", net["id"])


def test_segments_are_read_only_and_say_so(server: ServerProcess, admin: Client) -> None:
    net = admin.create("network", name="ro")
    segment = _call(server, "GET", f"/v2.0/segments?network_id={net['id']}").json()["segments"][0]
    for method, path, body in (
        ("POST", "/v2.0/segments", {"segment": {"network_id": net["id"], "network_type": "gre"}}),
        ("PUT", f"/v2.0/segments/{segment['id']}", {"segment": {"name": "x"}}),
        ("DELETE", f"/v2.0/segments/{segment['id']}", None),
    ):
        error = _neutron_error(_call(server, method, path, body), 405)
        assert "segments are read-only in tunnelnet" in error["message"]
    assert _call(server, "DELETE", f"/v2.0/segments/{segment['id']}", token=None).status_code == 401
    admin.delete("network", net["id"])


def test_a_fixed_ips_filter_without_support_is_refused(server: ServerProcess) -> None:
    response = _call(server, "GET", "/v2.0/ports?fixed_ips=ip_address_substr%3D10.5")
    assert "fixed_ips filter 'ip_address_substr' is not supported" in _neutron_error(
        response, 400)["message"]  # fmt: skip


def test_auth_type_none_against_a_token_server_is_told_what_to_do(
    server: ServerProcess,
) -> None:
    error = _neutron_error(_call(server, "GET", "/v2.0/networks", token="notused"), 401)
    assert "auth_type: none" in error["message"] and "noauth" in error["message"]


def test_noauth_lets_requests_act_as_admin_but_tokens_keep_their_rights(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "s.db", env={"TUNNELNET_AUTH_STRATEGY": "noauth"}) as proc:
        as_nobody = httpx.post(f"{proc.url}/v2.0/networks", json={"network": {"name": "n"}},
                               headers={"X-Auth-Token": "notused"}, timeout=10)  # fmt: skip
        assert as_nobody.status_code == 201
        assert as_nobody.json()["network"]["project_id"] == "admin"
        with proc.client() as admin:
            secret = admin.create_token(project="p1")["id"]
        with Client(proc.url, secret) as project:
            assert project.list("network") == []  # the admin's network stays invisible
