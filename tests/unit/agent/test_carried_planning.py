"""Planning from a view that carries the previous view's work gives what planning from a
fresh view gives, whatever changed in between.

The cache's views follow each other (``CloudView.follow``) and br-tun's memo is kept across
plans, as the agent keeps them; the oracle is a view built from copies of the same records
(nothing carried, fresh record objects) planned with no memo.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tunnelnet.agent.controller import ControllerCache, Event
from tunnelnet.agent.desired import (
    AgentConfig,
    NetworkFlowMemo,
    br_tun_flows,
    plan_tunnels,
)
from tunnelnet.agent.view import CloudView

HOSTS = ["hv1", "hv2", "hv3", "hv4"]
NETWORKS = ["net-a", "net-b", "net-c"]

change = st.one_of(
    st.tuples(st.just("port"), st.integers(0, 7), st.sampled_from(NETWORKS),
              st.sampled_from(HOSTS), st.integers(0, 3)),
    st.tuples(st.just("unport"), st.integers(0, 7)),
    st.tuples(st.just("peer"), st.sampled_from(HOSTS[1:]), st.booleans()),
    st.tuples(st.just("unpeer"), st.sampled_from(HOSTS[1:])),
    st.tuples(st.just("plan"), st.just(0)),
)


def _fresh(view: CloudView) -> CloudView:
    """The same content as new records in new mappings: nothing to know again by identity."""
    return CloudView(networks={k: replace(v) for k, v in view.networks.items()},
                     ports={k: replace(v) for k, v in view.ports.items()},
                     peers={k: replace(v) for k, v in view.peers.items()})


def _plan(conf: AgentConfig, view: CloudView, memo: NetworkFlowMemo | None,
          ofports: dict[str, int]) -> tuple[list[str], list[str]]:
    local = [view.networks[n] for n in NETWORKS if any(
        p.host == conf.host for p in view.ports.values() if p.network_id == n)]
    tunnels = [t.name for t in plan_tunnels(conf, view, local)]
    flows = br_tun_flows(conf, view, cookie=1, patch_int_ofport=1, local_networks=local,
                         local_vlans={n: i + 1 for i, n in enumerate(NETWORKS)},
                         tunnel_ofports=ofports, memo=memo)
    return tunnels, [f.add_text() for f in flows]


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(change, max_size=30))
# a remote port moves to another host within its network: the network's tuple has the same
# length, and must not be taken for the last view's
@example(True, [("port", 0, "net-a", "hv1", 0), ("port", 1, "net-a", "hv2", 1), ("plan", 0),
                ("port", 1, "net-a", "hv3", 1)])
def test_carried_plans_are_fresh_plans(l2pop: bool, changes: list[tuple]) -> None:
    conf = AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"}), l2pop=l2pop)
    cache = ControllerCache()  # takes every record as it comes (no host to follow)
    memo = NetworkFlowMemo()
    revision = 0

    def event(resource: str, action: str, obj: dict) -> None:
        nonlocal revision
        revision += 1
        cache.apply(Event(resource, action, obj, revision))

    for n, net in enumerate(NETWORKS):
        event("network", "create", {"id": net, "provider:network_type": "vxlan",
                                    "provider:segmentation_id": 100 + n})
    for host in HOSTS[1:]:
        event("agent", "create", {"host": host, "tunnel_ip": f"192.0.2.{HOSTS.index(host) + 1}",
                                  "tunnel_types": ["vxlan"]})
    ofports: dict[str, int] = {}
    for step in [*changes, ("plan", 0)]:
        if step[0] == "port":
            _, i, net, host, mac = step
            event("port", "update", {"id": f"p{i}", "network_id": net, "binding:host_id": host,
                                     "mac_address": f"fa:16:3e:00:00:{mac:02x}",
                                     "fixed_ips": [{"ip_address": f"10.0.0.{i + 2}"}]})
        elif step[0] == "unport":
            event("port", "delete", {"id": f"p{step[1]}"})
        elif step[0] == "peer":
            _, host, gre = step
            event("agent", "update", {"host": host, "tunnel_ip": f"192.0.2.{HOSTS.index(host) + 1}",
                                      "tunnel_types": ["vxlan", "gre"] if gre else ["vxlan"]})
        elif step[0] == "unpeer":
            event("agent", "delete", {"host": step[1]})
        else:
            view = cache.view()
            # tunnels get numbers as the agent's switch would give them, kept while they last
            expected_tunnels, _ = _plan(conf, _fresh(view), None, {})
            ofports = {name: ofports.get(name, 10 + len(ofports) + i)
                       for i, name in enumerate(expected_tunnels)}
            assert _plan(conf, view, memo, ofports) == _plan(conf, _fresh(view), None, ofports)
