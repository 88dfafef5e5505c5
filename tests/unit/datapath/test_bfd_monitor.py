"""BFD sessions on tunnel ports: two monitors, each on its own event loop with one fake clock,
joined by a wire that can be cut. What one sends is the frame another implementation reads
(scapy), and what the receive path hands over is taken only when it is a control packet."""

from __future__ import annotations

import random

import pytest
from scapy.contrib.bfd import BFD
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tunnelnet.datapath.bfd_monitor import BfdMonitor
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.tunnel_port import TunnelPort
from tunnelnet.packet.bfd import State

FAST = {"enable": "true", "min_tx": "100", "min_rx": "100"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Side:
    def __init__(self, clock: Clock, name: str, seed: int) -> None:
        self.loop = EventLoop(clock=clock)
        self.port = TunnelPort(PortKind.VXLAN, name, {"remote_ip": "127.0.0.2", "key": "flow"})
        self.sent: list[bytes] = []
        self.peer: Side | None = None
        self.connected = True
        self.monitor = BfdMonitor(self.loop, self._send, rng=random.Random(seed))

    def _send(self, port: TunnelPort, frame: bytes) -> None:
        self.sent.append(frame)
        if self.connected and self.peer is not None:
            self.peer.monitor.take(self.peer.port, frame, 0)


def pair() -> tuple[Clock, Side, Side]:
    clock = Clock()
    a, b = Side(clock, "vxlan-a", 1), Side(clock, "vxlan-b", 2)
    a.peer, b.peer = b, a
    return clock, a, b


def advance(clock: Clock, sides: tuple[Side, ...], seconds: float, step: float = 0.005) -> None:
    end = clock.now + seconds
    while clock.now < end:
        clock.now += step
        for side in sides:
            side.loop.run_once(0)


def state(side: Side) -> str:
    assert side.port.bfd is not None
    return side.port.bfd.status()["state"]


def test_two_ports_come_up_detect_a_cut_and_come_back() -> None:
    clock, a, b = pair()
    a.monitor.configure(a.port, FAST)
    b.monitor.configure(b.port, FAST)
    advance(clock, (a, b), 5.0)
    assert (state(a), state(b)) == ("up", "up")
    a.connected = b.connected = False
    cut = clock.now
    while state(a) == "up" or state(b) == "up":
        advance(clock, (a, b), 0.005)
        assert clock.now - cut < 1.0
    # detection time 3 x 100 ms after the last packet, which came at most 100 ms before the cut
    assert 0.2 <= clock.now - cut <= 0.32
    assert a.port.bfd is not None and a.port.bfd.status()["diagnostic"] == \
        "Control Detection Time Expired"
    a.connected = b.connected = True
    advance(clock, (a, b), 5.0)
    assert (state(a), state(b)) == ("up", "up")
    assert a.port.describe()["bfd_status"]["flap_count"] == "3"  # type: ignore[index]


def test_what_is_sent_is_a_control_frame_scapy_reads_inside_the_tunnel() -> None:
    clock, a, _ = pair()
    a.monitor.configure(a.port, {**FAST, "mult": "4"})
    advance(clock, (a,), 0.01)
    assert a.sent
    frame = Ether(a.sent[0])
    assert frame.dst == "00:23:20:00:00:01"
    assert (frame[IP].src, frame[IP].dst, frame[IP].ttl) == ("169.254.1.1", "169.254.1.0", 255)
    assert frame[UDP].dport == 3784 and 49152 <= frame[UDP].sport <= 65535
    assert int(frame[BFD].sta) == State.DOWN and frame[BFD].detect_mult == 4


def test_other_frames_go_on_to_the_tables() -> None:
    _, a, _ = pair()
    a.monitor.configure(a.port, FAST)
    ordinary = bytes(Ether() / IP() / UDP(dport=53) / b"x")
    assert not a.monitor.take(a.port, ordinary, 0)
    # a control packet for a port without BFD is not ours either (Open vSwitch 2.14+)
    _, c, _ = pair()
    assert not c.monitor.take(c.port, a.sent[0] if a.sent else bytes(
        Ether() / IP(ttl=255) / UDP(sport=49152, dport=3784) / BFD()), 0)


def test_check_tnl_key_takes_only_key_zero() -> None:
    clock, a, b = pair()
    a.monitor.configure(a.port, {**FAST, "check_tnl_key": "true"})
    b.monitor.configure(b.port, FAST)
    advance(clock, (b,), 0.01)
    assert not a.monitor.take(a.port, b.sent[0], 5)
    assert a.monitor.take(a.port, b.sent[0], 0)


def test_disabling_tells_the_peer_which_goes_down_at_once() -> None:
    clock, a, b = pair()
    a.monitor.configure(a.port, FAST)
    b.monitor.configure(b.port, FAST)
    advance(clock, (a, b), 5.0)
    assert state(b) == "up"
    a.monitor.configure(a.port, {"enable": "false"})
    assert a.port.bfd is None and a.port.describe()["bfd_status"] == {}
    assert b.port.bfd is not None and b.port.bfd.status()["state"] == "down"
    assert b.port.bfd.status()["diagnostic"] == "Neighbor Signaled Session Down"


def test_no_timer_runs_while_no_port_has_bfd() -> None:
    _, a, _ = pair()
    assert not a.loop._timers  # nothing wakes a daemon without BFD
    a.monitor.configure(a.port, FAST)
    a.monitor.stop(a.port)
    a.loop.run_once(0)
    assert not [t for t in a.loop._timers if not t.cancelled]


@pytest.mark.timeout(30)  # the spin this guards against never returns
def test_a_remote_that_asks_for_no_packets_does_not_make_the_timer_spin() -> None:
    clock, a, b = pair()
    a.monitor.configure(a.port, FAST)
    b.monitor.configure(b.port, FAST)
    advance(clock, (a, b), 5.0)
    assert a.port.bfd is not None
    a.port.bfd.remote_min_rx = 0  # as a remote's required min RX of 0 leaves it (6.8.7)
    a.connected = b.connected = False
    runs = 0
    real_run = a.monitor._run

    def counted() -> None:
        nonlocal runs
        runs += 1
        real_run()

    a.monitor._run = counted  # type: ignore[method-assign]
    a.monitor._reschedule()
    advance(clock, (a,), 1.0, step=0.001)
    assert runs < 50  # the detection deadline, not a wakeup per loop round
