"""Issue 21, seed 8: hv1's flood lists of both networks left hv3 out while every BFD session
was up. The interleavings suspected of it, each driven deterministically through the agent's
rounds against the fake switch: a BFD flap that lands right after the round's read of
br-tun (once two reads: what the "nothing changed" skip compared, and what liveness was
judged from; now one); both of hv3's tunnels going down and up while nothing else
changes (br-tun's memo per network); hv3's port records arriving before or after its agent
record (l2pop).

Expected values are the issue's rule as liveness.py states it: a network's flood list is the
tunnels to the other hypervisors hosting it, but for a tunnel whose BFD session went down.
"""

from __future__ import annotations

from collections.abc import Callable

from test_agent_fanout_equivalence import FanoutController

from support.agent_fakes import FakeController, FakeSwitch
from tunnelnet.agent.backend import SwitchPort
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.liveness import BfdSettings
from tunnelnet.agent.service import Agent, AgentTimers

FAST = AgentTimers(poll_interval=0.0, heartbeat_interval=0.0, max_backoff=0.0)
NETWORKS = {"red": ("vxlan", 0x1519), "blue": ("gre", 0x151A)}
PEERS = {"hv2": "192.0.2.2", "hv3": "192.0.2.3"}
TUNNELS = {f"{kind}-c00002{ip.rsplit('.', 1)[1].zfill(2)}": host
           for host, ip in PEERS.items() for kind in ("vxlan", "gre")}


def status(forwarding: bool, flaps: int) -> dict[str, str]:
    """bfd_status as Open vSwitch writes it (flap_count counts forwarding changes)."""
    state = "up" if forwarding else "down"
    return {"state": state, "forwarding": "true" if forwarding else "false",
            "diagnostic": "No Diagnostic" if forwarding else "Control Detection Time Expired",
            "remote_state": state, "remote_diagnostic": "No Diagnostic",
            "flap_count": str(flaps)}


class SteppedSwitch(FakeSwitch):
    """The fake switch, with something made to happen just before the n-th read of br-tun's
    ports from now (a BFD session changing while the agent is in the middle of a round)."""

    def __init__(self) -> None:
        super().__init__()
        self._due: list[tuple[int, Callable[[], None]]] = []

    def before_tun_read(self, nth: int, change: Callable[[], None]) -> None:
        self._due.append((nth, change))

    def list_ports(self, bridge: str) -> list[SwitchPort]:
        if bridge == "br-tun" and self._due:
            due = [(n - 1, c) for n, c in self._due]
            for _, change in [d for d in due if d[0] == 0]:
                change()
            self._due = [d for d in due if d[0] > 0]
        return super().list_ports(bridge)


def _port(ctl: FakeController, port_id: str, network: str, host: str, mac: str) -> None:
    ctl.change("port", "create", {"id": port_id, "network_id": network, "mac_address": mac,
                                  "binding:host_id": host, "status": "DOWN",
                                  "fixed_ips": [{"ip_address": f"10.74.0.{mac[-2:]}"}]})


def _peer(ctl: FakeController, host: str) -> None:
    ctl.change("agent", "create", {"host": host, "tunnel_ip": PEERS[host],
                                   "tunnel_types": ["vxlan", "gre"], "alive": True})


def _settle(agent: Agent, rounds: int = 3) -> None:
    for _ in range(rounds):
        agent.run_round()


def _cloud(*, hv3_first: str = "peer") -> tuple[FakeController, SteppedSwitch, Agent]:
    """hv1 (ours) and hv2 host red and blue; hv3 gets a port on each, its agent record
    before (``hv3_first="peer"``) or after (``"ports"``) those ports. The controller serves
    hv1 as the fanout does (one change per poll; with l2pop a peer's record only while it
    shares a network with hv1, and along with the port that makes it share one)."""
    ctl, sw = FanoutController(l2pop=True), SteppedSwitch()
    for name, (kind, key) in NETWORKS.items():
        ctl.change("network", "create", {"id": name, "provider:network_type": kind,
                                         "provider:segmentation_id": key})
    _peer(ctl, "hv2")
    sw.ensure_bridge("br-int", fail_secure=True)
    for i, name in enumerate(NETWORKS):
        _port(ctl, f"{name}-hv1", name, "hv1", f"fa:16:3e:00:01:1{i}")
        _port(ctl, f"{name}-hv2", name, "hv2", f"fa:16:3e:00:02:1{i}")
        sw.plug("br-int", f"tap-{name}", f"{name}-hv1")
    agent = Agent(AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan", "gre"}), l2pop=True),
                  ctl, sw, timers=FAST, cookie=0x21, bfd=BfdSettings())
    _settle(agent, 12)
    if hv3_first == "peer":
        _peer(ctl, "hv3")
    _settle(agent, 2)
    for i, name in enumerate(NETWORKS):
        _port(ctl, f"{name}-hv3", name, "hv3", f"fa:16:3e:00:03:1{i}")
        _settle(agent, 2)
    if hv3_first == "ports":
        _peer(ctl, "hv3")
    _settle(agent, 4)
    return ctl, sw, agent


def flood_lists(sw: FakeSwitch) -> dict[int, set[str]]:
    """Tunnel key -> the hosts table 22 floods to (read from the switch, as the bench does)."""
    host_of = {p.ofport: TUNNELS[p.name] for p in sw.list_ports("br-tun") if p.name in TUNNELS}
    lists: dict[int, set[str]] = {}
    for text in sw.texts("br-tun"):
        if text.startswith("table=22,") and "set_tunnel:" in text:
            actions = text.split("actions=", 1)[1].split(",")
            key = int(next(a for a in actions if a.startswith("set_tunnel:"))[11:], 16)
            lists[key] = {host_of.get(int(a[7:]), f"?{a[7:]}")
                          for a in actions if a.startswith("output:")}
    return lists


ALL_UP = {0x1519: {"hv2", "hv3"}, 0x151A: {"hv2", "hv3"}}
HV3_DOWN = {0x1519: {"hv2"}, 0x151A: {"hv2"}}


def _set(sw: FakeSwitch, names: list[str], forwarding: bool, flaps: int) -> None:
    for name in names:
        sw.set_bfd_status("br-tun", name, **status(forwarding, flaps))


HV3 = ["vxlan-c0000203", "gre-c0000203"]
HV2 = ["vxlan-c0000202", "gre-c0000202"]


def _all_up(sw: FakeSwitch, agent: Agent) -> None:
    _set(sw, HV2 + HV3, True, 1)
    _settle(agent)
    assert flood_lists(sw) == ALL_UP


def test_hv3_ports_before_or_after_its_agent_record_end_in_both_flood_lists() -> None:
    for first in ("peer", "ports"):
        _, sw, _ = _cloud(hv3_first=first)
        assert flood_lists(sw) == ALL_UP, first


def test_a_flap_right_after_the_rounds_read_of_br_tun_is_seen_and_undone() -> None:
    _, sw, agent = _cloud()
    _all_up(sw, agent)
    # something else changes (so the round plans), and hv3's sessions go down right after
    # the round's read of br-tun: the round reads br-tun once (the "nothing changed" skip
    # and liveness judge the same read), so the next round is the one that sees it
    sw.set_bfd_status("br-tun", "vxlan-c0000202", **{**status(True, 1), "diagnostic": "x"})
    sw.before_tun_read(2, lambda: _set(sw, HV3, False, 2))
    agent.run_round()
    assert flood_lists(sw) == ALL_UP
    agent.run_round()
    assert flood_lists(sw) == HV3_DOWN
    _set(sw, HV3, True, 3)
    _settle(agent)
    assert flood_lists(sw) == ALL_UP


def test_a_flap_down_and_up_within_one_round_leaves_hv3_in() -> None:
    _, sw, agent = _cloud()
    _all_up(sw, agent)
    sw.set_bfd_status("br-tun", "vxlan-c0000202", **{**status(True, 1), "diagnostic": "x"})
    sw.before_tun_read(2, lambda: _set(sw, HV3, False, 2))
    sw.before_tun_read(3, lambda: _set(sw, HV3, True, 3))  # up again before the apply
    agent.run_round()
    _settle(agent)
    assert flood_lists(sw) == ALL_UP


def test_only_liveness_changing_replans_both_networks_each_way() -> None:
    # nothing but hv3's two sessions changes: br-tun's memo per network must see it
    _, sw, agent = _cloud()
    _all_up(sw, agent)
    for flaps in (2, 4, 6):
        _set(sw, HV3, False, flaps)
        _settle(agent)
        assert flood_lists(sw) == HV3_DOWN
        _set(sw, HV3, True, flaps + 1)
        _settle(agent)
        assert flood_lists(sw) == ALL_UP
