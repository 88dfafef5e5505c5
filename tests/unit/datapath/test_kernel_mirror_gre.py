"""GRE plans in the kernel fast path (issue #22): the same frames on the same wires, the same
counters, whether the kernel model or the Python path carries them.

Two switchboards side by side, one bridge with two VM ports and a GRE port (key=flow), as
test_kernel_mirror_equivalence.py does for VM ports: the oracle walks every packet; the other
has a kernel mirror whose maps are modelled on dicts, with models of ``gre_port_ingress``
(a VM port's frame with a GRE entry leaves on the GRE wire, unseen by Python) and of
``gre_uplink_ingress`` (GRE from the peer with an entry's key goes straight to the VM port).
The model writes the GRE header as RFC 2784/2890 lay it out (flags with K only, type 0x6558,
the key), not with our codec; the Python path's sends are read where its raw socket would be
written. Random steps: frames out and in (IPv4 and ARP, two networks' keys, a key no network
has), flow changes that change the key, idle timeouts, looks at every counter.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kernel_mirror_equivalence import KernelSidePort, _NoUpcalls

from support.switchboard_scenarios import AddFlow, Advance, Clock, Look
from support.vswitchd import RecordingPort
from tunnelnet.datapath import messages as m
from tunnelnet.datapath import tunnel as tunnel_module
from tunnelnet.datapath.kernel_maps import (
    EncapKind,
    EncapPortPlan,
    EncapTunnelPlan,
    EntryCounters,
    Inner,
    PortPlan,
    Stat,
    TunnelPlan,
)
from tunnelnet.datapath.kernel_mirror import KernelMirror
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import Port, PortKind
from tunnelnet.datapath.service import Service
from tunnelnet.datapath.switchboard import Switchboard, make_port
from tunnelnet.datapath.tunnel_port import TunnelPort

PEER = "127.0.0.2"  # routed by lo: a route the mirror can read without a namespace
KEY_A, KEY_B, KEY_C = 0x1772, 0xFFFFFFF0, 77  # B: a key wider than a VNI; C: no network's
VMS = (("v1", 1), ("v2", 2))
GRE_OFPORT = 10
TABLE = [
    f"table=0,priority=10,in_port=1,actions=set_tunnel:{KEY_A},output:{GRE_OFPORT}",
    f"table=0,priority=10,in_port=2,actions=set_tunnel:{KEY_B},output:{GRE_OFPORT}",
    f"table=0,priority=10,idle_timeout=30,in_port={GRE_OFPORT},tun_id={KEY_A},actions=output:1",
    f"table=0,priority=10,in_port={GRE_OFPORT},tun_id={KEY_B},actions=output:2",
    "table=0,priority=0,actions=drop",
]
TEB_WITH_KEY = b"\x20\x00\x65\x58"  # RFC 2784 flags (K bit of RFC 2890 set), TEB


def _frame(src: int, dst: int, kind: str, sport: int = 1000) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import ARP, Ether
    from scapy.packet import Raw

    ether = Ether(src=f"02:00:00:00:00:0{src}", dst=f"02:00:00:00:00:0{dst}")
    if kind == "arp":
        return bytes(ether / ARP(psrc=f"10.0.0.{src}", pdst=f"10.0.0.{dst}"))
    size = 1400 if kind == "big" else 40
    return bytes(ether / IP(src=f"10.0.0.{src}", dst=f"10.0.0.{dst}")
                 / UDP(sport=sport, dport=53) / Raw(b"x" * size))


@dataclass(frozen=True)
class Out:
    """A VM's frame into its port."""

    port: str
    frame: bytes


@dataclass(frozen=True)
class In:
    """A GRE packet from ``src`` with ``key`` around ``frame``, as the receive path reads it."""

    key: int
    frame: bytes
    src: str = PEER


@dataclass
class _Entry:
    plan: PortPlan | EncapPortPlan | TunnelPlan | EncapTunnelPlan
    packets: int = 0
    bytes: int = 0
    last_used_ns: int = 0


@dataclass
class GreModel:
    """The map calls KernelMirror makes, on dicts, and the two GRE programs' decisions."""

    clock: Clock
    ports: dict[tuple[int, Inner], _Entry] = field(default_factory=dict)
    tunnels: dict[tuple[int, str, Inner], _Entry] = field(default_factory=dict)
    wire: list[tuple[str, bytes]] = field(default_factory=list)  # the kernel's GRE sends
    hits: int = 0

    def attach_port(self, ifindex: int) -> None:
        pass

    def attach_gre_uplink(self, ifindex: int) -> None:
        pass

    def filter_socket(self, sock: socket.socket, *, untagged_only: bool = False) -> None:
        pass

    def detach(self, ifindex: int) -> None:
        pass

    def close(self) -> None:
        pass

    @staticmethod
    def _counters(entry: _Entry | None) -> EntryCounters | None:
        return None if entry is None else EntryCounters(entry.packets, entry.bytes,
                                                        entry.last_used_ns)

    def install_port(self, plan: PortPlan) -> None:
        raise AssertionError("no VM port to VM port plan in these tables")

    def install_tunnel(self, plan: TunnelPlan) -> None:
        raise AssertionError("no VXLAN in these tables")

    def install_encap_port(self, plan: EncapPortPlan) -> None:
        plan.entry()  # refuses what the real one refuses
        self.ports[(plan.in_ifindex, plan.inner)] = _Entry(plan)

    def encap_port_counters(self, in_ifindex: int, inner: Inner) -> EntryCounters | None:
        return self._counters(self.ports.get((in_ifindex, inner)))

    def remove_encap_port(self, in_ifindex: int, inner: Inner) -> EntryCounters | None:
        return self._counters(self.ports.pop((in_ifindex, inner), None))

    def install_encap_tunnel(self, plan: EncapTunnelPlan) -> None:
        plan.entry()
        self.tunnels[(plan.key, plan.remote_ip, plan.inner)] = _Entry(plan)

    def encap_tunnel_counters(self, key: int, remote_ip: str, inner: Inner,
                              kind: EncapKind = EncapKind.GRE) -> EntryCounters | None:
        assert kind is EncapKind.GRE
        return self._counters(self.tunnels.get((key, remote_ip, inner)))

    def remove_encap_tunnel(self, key: int, remote_ip: str, inner: Inner,
                            kind: EncapKind = EncapKind.GRE) -> EntryCounters | None:
        assert kind is EncapKind.GRE
        return self._counters(self.tunnels.pop((key, remote_ip, inner), None))

    def stats(self) -> dict[Stat, int]:
        return dict.fromkeys(Stat, 0)

    def encap_stats(self) -> dict[object, int]:
        return {}

    def port_meters(self) -> dict[int, tuple[int, int]]:
        return {}  # the port meter is not modelled: no meter is set here

    def forget_port_meter(self, ifindex: int) -> None:
        pass

    def _count(self, entry: _Entry, frame: bytes) -> None:
        entry.packets += 1
        entry.bytes += len(frame)
        entry.last_used_ns = round(self.clock.now * 1e9)
        self.hits += 1

    def port_ingress(self, port: KernelSidePort, frame: bytes) -> bool:
        """encap_port_decision and the send: True when the kernel sent it."""
        entry = self.ports.get((port.ifindex, Inner.of_frame(frame)))
        if entry is None:
            return False
        plan = entry.plan
        assert isinstance(plan, EncapPortPlan)
        is_ip = frame[12:14] in (b"\x08\x00", b"\x86\xdd")
        if (not is_ip and plan.next_hop_mac is None) or len(frame) > plan.max_frame_len:
            return False
        self.wire.append((plan.remote_ip, TEB_WITH_KEY + plan.key.to_bytes(4, "big") + frame))
        self._count(entry, frame)
        return True

    def uplink_ingress(self, arrival: In) -> int | None:
        """gre_uplink_ingress: the VM port's ifindex the frame went to, or None (Python)."""
        entry = self.tunnels.get((arrival.key, arrival.src, Inner.of_frame(arrival.frame)))
        if entry is None:
            return None
        self._count(entry, arrival.frame)
        plan = entry.plan
        assert isinstance(plan, EncapTunnelPlan)
        return plan.out_ifindex


class _FakeRaw:
    """The raw GRE socket, never written: the sender's _send_raw is replaced."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()


@contextmanager
def board(clock: Clock, monkeypatch: pytest.MonkeyPatch, *, kernel: bool
          ) -> Iterator[tuple[Switchboard, GreModel | None, list[tuple[str, bytes]]]]:
    loop = EventLoop()
    index = iter(range(10, 100))
    wire: list[tuple[str, bytes]] = []  # what the Python path gave its raw socket

    def ports(kind: PortKind, name: str, options: dict[str, str]) -> Port:
        if kind is PortKind.SYSTEM:
            return KernelSidePort(name, options, next(index))
        return make_port(kind, name, options)

    def send_raw(port: TunnelPort, sock: object, payload: bytes) -> None:
        wire.append((port.remote_ip, payload))

    monkeypatch.setattr(tunnel_module, "open_raw", lambda protocol: _FakeRaw())
    made = Switchboard(loop, port_factory=ports)  # type: ignore[arg-type]
    made.tunnels.tx._send_raw = send_raw  # type: ignore[method-assign,assignment]
    model: GreModel | None = None
    if kernel:
        model = GreModel(clock)
        made.use_kernel(KernelMirror(model, 1, False, _NoUpcalls()),  # type: ignore[arg-type]
                        4789)
    try:
        made.add_bridge("br-gre", "secure")
        state = made.bridge("br-gre")
        state.bridge._clock = clock
        state.cache._clock = clock
        for name, ofport in VMS:
            made.add_port("br-gre", name, PortKind.SYSTEM, ofport=ofport)
        made.add_port("br-gre", "gre-peer", PortKind.GRE, ofport=GRE_OFPORT,
                      options={"remote_ip": PEER, "key": "flow"})
        Service(made)(m.DelFlows("br-gre", ""))
        Service(made)(m.AddFlows("br-gre", TABLE))
        yield made, model, wire
    finally:
        made.close()
        loop.close()


def _apply(made: Switchboard, model: GreModel | None, step: object) -> None:
    if isinstance(step, Out):
        port = made.ports[step.port]
        assert isinstance(port, KernelSidePort)
        if model is None or not model.port_ingress(port, step.frame):
            port.stats.rx_packets += 1  # as the receive loop counts them
            port.stats.rx_bytes += len(step.frame)
            made.forwarding._input(port, [step.frame], None, None, None, None)
    elif isinstance(step, In):
        gre = made.ports["gre-peer"]
        assert isinstance(gre, TunnelPort)
        out = model.uplink_ingress(step) if model is not None else None
        if out is None:
            src = int.from_bytes(socket.inet_aton(step.src), "big")
            made.forwarding._from_tunnel(gre, [step.frame], step.key, src, gre.tun_dst, None)
        else:
            vm = next(p for p in made.ports.values()
                      if isinstance(p, KernelSidePort) and p.ifindex == out)
            vm.sent.append(step.frame)
    elif isinstance(step, AddFlow):
        Service(made)(m.AddFlows("br-gre", [step.text]))
    elif isinstance(step, Advance) and step.expire:
        made.housekeeping()
    made.tunnels.flush()
    made.check_kernel()


def _observed(made: Switchboard) -> tuple[object, ...]:
    made.sync()
    ports = {name: (port.stats.to_dict(), list(port.sent) if isinstance(port, RecordingPort)
                    else None) for name, port in made.ports.items()}
    br = made.bridge("br-gre").bridge
    return ports, br.dump_flows(), dict(br.drops), {
        t: (v.n_lookups, v.n_matched) for t, v in br.tables.items()}


def _side_by_side(steps: list[object]) -> GreModel:
    clock = Clock()
    with pytest.MonkeyPatch.context() as patch, \
            board(clock, patch, kernel=False) as (walked, _, walked_wire), \
            board(clock, patch, kernel=True) as (kerneled, model, python_wire):
        assert model is not None
        for step in steps:
            if isinstance(step, Advance):
                clock.now += step.seconds
            _apply(walked, None, step)
            _apply(kerneled, model, step)
            # the GRE wire: Python's sends and the kernel's, in order, against the walk's
            assert sorted(python_wire + model.wire) == sorted(walked_wire), step
            assert len(python_wire) + len(model.wire) == len(walked_wire)
            if isinstance(step, Look):
                assert _observed(kerneled) == _observed(walked)
        assert _observed(kerneled) == _observed(walked)
        return model


_FRAMES = st.sampled_from(["ip", "ip2", "arp", "big"])


@st.composite
def _steps(draw: st.DrawFn) -> list[object]:
    steps: list[object] = []
    for _ in range(draw(st.integers(4, 30))):
        what = draw(st.sampled_from(["out", "out", "in", "in", "flow", "time", "look"]))
        kind = draw(_FRAMES)
        sport = 2000 if kind == "ip2" else 1000
        kind = "ip" if kind == "ip2" else kind
        if what == "out":
            vm, number = draw(st.sampled_from(VMS))
            steps.append(Out(vm, _frame(number, 9, kind, sport)))
        elif what == "in":
            key = draw(st.sampled_from([KEY_A, KEY_B, KEY_C]))
            src = draw(st.sampled_from([PEER, PEER, "127.0.0.3"]))
            dst = 1 if key == KEY_A else 2
            steps.append(In(key, _frame(9, dst, kind, sport), src))
        elif what == "flow":  # the key network A's VM sends with changes, or comes back
            key = draw(st.sampled_from([KEY_A, KEY_C]))
            steps.append(AddFlow("br-gre", f"table=0,priority=10,in_port=1,"
                                           f"actions=set_tunnel:{key},output:{GRE_OFPORT}"))
        elif what == "time":
            steps.append(Advance(draw(st.sampled_from([1.0, 31.0])), draw(st.booleans())))
        else:
            steps.append(Look())
    return steps


@settings(max_examples=30, deadline=None)
@given(_steps())
def test_gre_plans_send_receive_and_count_the_same_with_the_kernel_replaying(
        steps: list[object]) -> None:
    _side_by_side(steps)


def test_the_gre_model_carries_frames_both_ways_and_leaves_arp_to_python() -> None:
    """The equivalence above is not vacuous: GRE frames are carried by the kernel model both
    ways, a key wider than a VNI included; ARP (no next-hop MAC on lo) stays in Python."""
    out_a, out_b = _frame(1, 9, "ip"), _frame(2, 9, "ip")
    back = _frame(9, 1, "ip")
    arp = _frame(1, 9, "arp")
    steps: list[object] = [Out("v1", out_a), Out("v2", out_b), In(KEY_A, back)] * 4
    steps += [Out("v1", arp)] * 3 + [Look()]
    model = _side_by_side(steps)
    assert model.hits == 9  # three of each after the first walked one
    keys = {payload[4:8] for _, payload in model.wire}
    assert keys == {KEY_A.to_bytes(4, "big"), KEY_B.to_bytes(4, "big")}
    assert all(arp not in payload for _, payload in model.wire)
