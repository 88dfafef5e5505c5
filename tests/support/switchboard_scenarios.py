"""The switchboard equivalence scenarios: random flow tables, frames and steps run on two
switchboards side by side, one of them the oracle that walks every packet.

test_fastpath_equivalence.py runs them against plans, test_kernel_mirror_equivalence.py
against a model of the kernel fast path. Both boards are wired alike (``wire_boards``): two
bridges joined by a patch pair, with system ports on both. A scenario is a list of steps; the
modules send frames their own way and share the rest (``apply_control``), and compare what
each port sent (``sent``) and everything a control request can read (``observed``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from support.vswitchd import RecordingPort
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.service import Service
from tunnelnet.datapath.switchboard import Switchboard

MACS = ("02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03", "ff:ff:ff:ff:ff:ff")
# (bridge, port name, ofport, tag): p* on br-a, q* on br-b
SYSTEM_PORTS = (("br-a", "p1", 1, 5), ("br-a", "p2", 2, None), ("br-a", "p3", 3, None),
                ("br-b", "q1", 1, None), ("br-b", "q2", 2, None))
# (bridge, port name, ofport, peer): the patch pair pa <-> pb
PATCHES = (("br-a", "pa", 4, "pb"), ("br-b", "pb", 4, "pa"))
LEARN = ("learn(table=20,priority=1,hard_timeout={t},NXM_OF_VLAN_TCI[0..11],"
         "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
         "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])")

matches = st.sampled_from([
    "", "in_port=1", "in_port=2", "in_port=3", "in_port=4", "dl_vlan=5", "dl_vlan=7",
    "vlan_tci=0", "dl_dst=02:00:00:00:00:02", "dl_src=02:00:00:00:00:01",
    "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00", "tun_id=0x64", "udp", "tcp,tp_dst=80", "icmp",
])
actions = st.sampled_from([
    "drop", "NORMAL", "output:1", "output:2", "output:3", "output:4", "output:1,output:2",
    "resubmit(,1)", "resubmit(,20)", "mod_vlan_vid:5,resubmit(,1)", "strip_vlan,output:2",
    "set_tunnel:0x64,output:4", "mod_dl_src:02:00:00:00:00:09,output:1", "in_port", "FLOOD",
    LEARN.format(t=30) + ",output:4", LEARN.format(t=5) + ",NORMAL", "mod_vlan_vid:7,NORMAL",
])
flows = st.builds(
    lambda table, prio, match, act, idle, hard: (
        f"table={table},priority={prio}{',' + match if match else ''}"
        f"{f',idle_timeout={idle}' if idle else ''}{f',hard_timeout={hard}' if hard else ''}"
        f" actions={act}"),
    st.sampled_from([0, 0, 1, 20]), st.integers(0, 3), matches, actions,
    st.sampled_from([0, 0, 3, 10]), st.sampled_from([0, 0, 4, 20]),
)
BASES = (
    ["priority=0 actions=NORMAL"],
    ["priority=0 actions=NORMAL", "priority=5,in_port=3,idle_timeout=3 actions=output:4"],
    [f"table=0,priority=1,in_port=4 actions={LEARN.format(t=5)},output:1",
     "table=0,priority=0 actions=resubmit(,20)",
     "table=20,priority=0 actions=mod_vlan_vid:5,NORMAL"],
)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    src, dst = draw(st.sampled_from(MACS[:3])), draw(st.sampled_from(MACS))
    l2 = Ether(src=src, dst=dst)
    vlan = draw(st.sampled_from([None, None, None, 5]))  # tagged frames always walk
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    ip = IP(src="10.0.0.1", dst=draw(st.sampled_from(["10.0.0.2", "10.0.0.3"])))
    l4 = draw(st.sampled_from([ICMP(), UDP(sport=1000, dport=53), TCP(sport=1000, dport=80)]))
    return bytes(l2 / ip / l4 / Raw(b"x" * draw(st.sampled_from([20, 60]))))


@dataclass(frozen=True)
class Send:
    port: str
    frame: bytes
    burst: int  # frames of this one flow arriving together
    lone: bool = False  # one frame read by itself from a quiet socket (its own short way)


@dataclass(frozen=True)
class AddFlow:
    bridge: str
    text: str


@dataclass(frozen=True)
class DelFlows:
    bridge: str
    text: str


@dataclass(frozen=True)
class Advance:
    seconds: float
    expire: bool


@dataclass(frozen=True)
class Retag:
    port: str
    tag: int | None


@dataclass(frozen=True)
class Look:
    """Compare everything here (settling what is pending)."""


bridges = st.sampled_from(["br-a", "br-b"])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[str], list[str], list[object]]:
    tables = [[*draw(st.sampled_from(BASES)), *draw(st.lists(flows, max_size=6))]
              for _ in range(2)]
    # a few (port, frame) flows, so that plans are made and then followed
    pool = draw(st.lists(st.tuples(st.sampled_from([p[1] for p in SYSTEM_PORTS]), frames()),
                         min_size=1, max_size=3))
    send = st.builds(lambda flow, burst, lone: Send(flow[0], flow[1], burst, lone and burst == 1),
                     st.sampled_from(pool), st.sampled_from([1, 1, 1, 3]), st.booleans())
    other = st.one_of(
        st.builds(AddFlow, bridges, flows),
        st.builds(DelFlows, bridges, matches),
        st.builds(Advance, st.sampled_from([0.5, 2.0, 4.0, 6.0, 25.0, 40.0, 301.0]),
                  st.booleans()),
        st.builds(Retag, st.sampled_from(["p1", "p2", "q1"]), st.sampled_from([None, 5, 7])),
        st.just(Look()),
    )
    steps = draw(st.lists(st.one_of(send, send, send, send, send, send, other), min_size=10,
                          max_size=60))
    return tables[0], tables[1], steps


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# Tables like the agent's: NORMAL on br-a (with an idle timeout in the way), and on br-b a
# tunnel-like ingress that learns with a hard timeout, a table-20 that forwards by what was
# learned and floods the rest; traffic both ways between two MACs, so that plans are made and
# followed for long stretches between clock advances, expiry and looks.
AGENT_LIKE_A = ["priority=0 actions=NORMAL",
                "priority=5,dl_dst=02:00:00:00:00:02,idle_timeout=3 actions=NORMAL"]
AGENT_LIKE_B = [f"table=0,priority=1,in_port=1 actions={LEARN.format(t=5)},output:4",
                "table=0,priority=1,in_port=4,idle_timeout=10 actions=resubmit(,20)",
                "table=20,priority=0 actions=output:1,output:2"]


@st.composite
def agent_like(draw: st.DrawFn) -> list[object]:
    def frame(src: str, dst: str, size: int) -> bytes:
        return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP()
                     / Raw(b"x" * size))
    out = st.builds(lambda size, burst, lone: Send("p2", frame(MACS[0], MACS[1], size), burst,
                                                   lone and burst == 1),
                    st.sampled_from([20, 60]), st.sampled_from([1, 1, 2, 5]), st.booleans())
    back = st.builds(lambda burst, lone: Send("q1", frame(MACS[1], MACS[0], 20), burst,
                                              lone and burst == 1),
                     st.sampled_from([1, 1, 3]), st.booleans())
    advance = st.builds(Advance, st.sampled_from([0.5, 1.0, 2.5, 4.0, 6.0, 301.0]),
                        st.booleans())
    return draw(st.lists(st.one_of(out, out, back, back, advance, advance, st.just(Look())),
                         min_size=10, max_size=80))


def wire_boards(made: Switchboard, clock: Clock) -> None:
    """Both bridges on ``clock``, their system ports and the patch pair; no flows yet."""
    for name in ("br-a", "br-b"):
        made.add_bridge(name, "secure")
        state = made.bridge(name)
        state.bridge._clock = clock
        state.cache._clock = clock
    for bridge, name, ofport, tag in SYSTEM_PORTS:
        made.add_port(bridge, name, PortKind.SYSTEM, ofport=ofport, tag=tag)
    for bridge, name, ofport, peer in PATCHES:
        made.add_port(bridge, name, PortKind.PATCH, ofport=ofport, options={"peer": peer})


def apply_control(made: Switchboard, step: object) -> None:
    """Every step but ``Send``: flow-mods through the control service, as in the daemon;
    expiry; retags. (The clock is the caller's to advance, once for both boards.)"""
    if isinstance(step, AddFlow):
        Service(made)(m.AddFlows(step.bridge, [step.text]))
    elif isinstance(step, DelFlows):
        Service(made)(m.DelFlows(step.bridge, step.text))
    elif isinstance(step, Advance):
        if step.expire:
            made.housekeeping()
    elif isinstance(step, Retag):
        bridge = made.ports[step.port].bridge
        if step.tag is None:
            made.set_port(bridge, step.port, clear_tag=True)
        else:
            made.set_port(bridge, step.port, tag=step.tag)


def sent(made: Switchboard) -> dict[str, list[bytes]]:
    """The frames each port has sent so far."""
    return {name: list(port.sent) for name, port in made.ports.items()
            if isinstance(port, RecordingPort)}


def observed(made: Switchboard, *, ordered_fdb: bool = True) -> tuple[object, ...]:
    """All a control request reads: every port's counters and frames, and each bridge's
    flows with their counters, MAC table, table statistics and drop counts, read after
    ``sync`` as every reader does. ``ordered_fdb=False`` compares the MAC table as a set."""
    made.sync()
    ports = {name: (port.stats.to_dict(), list(port.sent) if isinstance(port, RecordingPort)
                    else None) for name, port in made.ports.items()}
    bridges = {}
    for name, state in made.bridges.items():
        br = state.bridge
        fdb = br.fdb_show() if ordered_fdb else sorted(br.fdb_show(), key=repr)
        bridges[name] = (br.dump_flows(), fdb, dict(br.drops), dict(br.drops_by_table),
                         dict(state.drops),
                         {t: (v.n_lookups, v.n_matched) for t, v in br.tables.items()})
    return ports, bridges
