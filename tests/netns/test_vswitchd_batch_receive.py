"""A system port reads its frames in bursts (recvmmsg): nothing may be lost, reordered or
changed on the way. Frames are sent by an independent AF_PACKET socket on the veth's other
end and built with scapy; what the port's receive() returns must be exactly those bytes. Each
test runs twice: with recvmmsg, and with the one-recvmsg-per-frame path used where the libc
has no recvmmsg."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from support.netns import inside, lab, run
from tunnelnet.datapath.ports import BURST
from tunnelnet.datapath.system_port import SystemPort

pytestmark = [pytest.mark.netns, pytest.mark.root]

EXPERIMENTAL = 0x88B5  # IEEE 802 local experimental EtherType: nothing else sends it


@pytest.fixture(params=["recvmmsg", "recvmsg"])
def wire(request: pytest.FixtureRequest) -> Iterator[tuple[SystemPort, socket.socket]]:
    """A system port on one end of a veth and a raw sender on the other (MTU 9000: jumbo
    frames too)."""
    with lab() as made:
        ns = made.netns()
        run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
             "net.ipv6.conf.default.disable_ipv6=1"], netns=ns)
        run(["ip", "link", "add", "port0", "mtu", "9000", "type", "veth", "peer", "name",
             "wire0", "mtu", "9000"], netns=ns)
        run(["ip", "link", "set", "port0", "up"], netns=ns)
        run(["ip", "link", "set", "wire0", "up"], netns=ns)
        port = inside(ns, lambda: SystemPort("port0", {}))
        if request.param == "recvmsg":
            port._batch = None

        def sender() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            sock.bind(("wire0", 0))
            return sock

        tx = inside(ns, sender)
        try:
            yield port, tx
        finally:
            tx.close()
            port.close()


def _frame(n: int, size: int) -> bytes:
    head = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=EXPERIMENTAL)
    body = n.to_bytes(4, "big") * (size // 4)
    return bytes(head / Raw(body))


def _ours(port: SystemPort, want: int, timeout: float = 5.0) -> list[bytes]:
    """Frames of the test's EtherType received by ``port``, until ``want`` or a quiet spell."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        batch = [item for _, receive in port.readers() for item in receive()]
        if not batch:
            time.sleep(0.01)
        for frame, gso in batch:
            assert gso is None
            if EXPERIMENTAL.to_bytes(2, "big") in (frame[12:14], frame[16:18], frame[20:22]):
                got.append(frame)
    return got


def test_port_reads_in_bursts(wire: tuple[SystemPort, socket.socket],
                              request: pytest.FixtureRequest) -> None:
    port, _ = wire
    if "recvmsg]" in request.node.name:
        pytest.skip("the recvmsg variant of the fixture")
    assert port._batch is not None  # else every test here would prove recvmsg instead


def test_every_frame_arrives_once_in_order_across_bursts_of_all_sizes(
        wire: tuple[SystemPort, socket.socket]) -> None:
    port, tx = wire
    # many bursts (of BURST frames at most), frames from the smallest to jumbo
    sent = [_frame(n, 8900 if n % 7 == 0 else 46 + n % 1400) for n in range(50 * BURST)]
    got: list[bytes] = []
    for start in range(0, len(sent), 200):
        chunk = sent[start:start + 200]
        for frame in chunk:
            tx.send(frame)
        got += _ours(port, len(chunk))
    assert len(got) == len(sent)
    assert got == sent


def test_vlan_tags_the_kernel_takes_out_are_put_back(
        wire: tuple[SystemPort, socket.socket]) -> None:
    port, tx = wire
    payload = Raw(b"tagged" * 20)
    base = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    sent = [
        bytes(base / Dot1Q(vlan=5, prio=3, type=EXPERIMENTAL) / payload),
        bytes(base / Dot1Q(vlan=4094, type=EXPERIMENTAL) / Raw(b"L" * 4000)),
        bytes(base / Dot1AD(vlan=7) / Dot1Q(vlan=5, type=EXPERIMENTAL) / payload),
        bytes(base / Dot1Q(vlan=0, prio=5, type=EXPERIMENTAL) / payload),  # priority tag
    ]
    for frame in sent:
        tx.send(frame)
    assert _ours(port, len(sent)) == sent


def test_frames_the_kernel_drops_when_we_are_slow_are_counted_not_silent(
        wire: tuple[SystemPort, socket.socket]) -> None:
    port, tx = wire
    sent = [_frame(n, 1400) for n in range(10_000)]  # 14 MB: more than the socket buffer
    for frame in sent:  # nobody reads meanwhile
        tx.send(frame)
    got = _ours(port, len(sent), timeout=1.0)
    dropped = port.collect_kernel_drops()
    assert got == sent[:len(got)]  # what arrived is the oldest, in order
    assert dropped > 0
    assert len(got) + dropped == len(sent)
    assert port.stats.rx_dropped == dropped


def test_a_tagged_frame_never_comes_through_the_untagged_socket(
        wire: tuple[SystemPort, socket.socket]) -> None:
    """From the VM's side: frames tagged for other VLANs, sent when the port is quiet (read
    with a plain recv, which cannot see a tag the kernel holds as metadata) and mixed with
    untagged ones. Each must keep its tag; were one to lose it, it would enter the port's own
    VLAN: a way from one network into another."""
    port, tx = wire
    if port._tagged is None:
        pytest.skip("this kernel cannot split tagged frames; every read sees the tags")
    base = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    tagged = [bytes(base / Dot1Q(vlan=v, type=EXPERIMENTAL) / Raw(b"t" * 60)) for v in (7, 8)]
    tagged.append(bytes(base / Dot1AD(vlan=9) / Dot1Q(vlan=7, type=EXPERIMENTAL)
                        / Raw(b"q" * 60)))
    plain = [_frame(n, 100) for n in range(3)]
    for frame in (tagged[0], plain[0], tagged[1], plain[1], tagged[2], plain[2]):
        time.sleep(0.005)  # quiet between frames: each untagged one read with recv()
        tx.send(frame)
    time.sleep(0.05)
    through_plain: list[bytes] = []
    while batch := port.receive():  # one at a time while quiet, then bursts
        through_plain += [frame for frame, _ in batch]
    through_tagged = [frame for frame, _ in port.receive_tagged()]
    # a tagged frame read here would show as an untagged one with a "t" or "q" payload
    assert [f for f in through_plain if f[12:14] == EXPERIMENTAL.to_bytes(2, "big")] == plain
    assert [f for f in through_tagged if f in tagged] == tagged
