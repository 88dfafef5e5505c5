"""The VXLAN sockets' burst receive (batchrecv.UdpBatchReceiver): every datagram, in order,
with the address it came from, and a UDP GRO batch with the segment size the kernel reports.
Senders are plain sockets in another namespace (the independent side)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from support.netns import inside, lab, run
from tunnelnet.datapath.batchrecv import Datagram, UdpBatchReceiver

pytestmark = [pytest.mark.netns, pytest.mark.root]

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
PORT = 4789
RECEIVER, SENDERS = "10.1.0.2", ("10.1.0.1", "10.1.0.3")


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """(sender namespace, receiver namespace) joined by a veth, GRO on the receiving end."""
    with lab() as made:
        tx, rx = made.netns(), made.netns()
        made.veth(tx, "eth0", rx, "eth0")
        for addr in SENDERS:
            made.addr(tx, "eth0", f"{addr}/24")
        made.addr(rx, "eth0", f"{RECEIVER}/24")
        run(["ethtool", "-K", "eth0", "gro", "on"], netns=rx, check=False)
        yield tx, rx


def _listener(rx: str) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        sock.bind((RECEIVER, PORT))
        sock.setblocking(False)
        return sock
    return inside(rx, make)


def _sender(tx: str, address: str) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, 0))
        return sock
    return inside(tx, make)


def _drain(receiver: UdpBatchReceiver, sock: socket.socket, want: int) -> list[Datagram]:
    got: list[Datagram] = []
    deadline = time.monotonic() + 5
    while len(got) < want and time.monotonic() < deadline:
        batch = receiver.receive(sock.fileno(), 64)
        if not batch:
            time.sleep(0.01)
        got += batch
    return got


def _int(address: str) -> int:
    return int.from_bytes(socket.inet_aton(address), "big")


def test_every_datagram_arrives_in_order_with_its_source(pair: tuple[str, str]) -> None:
    tx, rx = pair
    listener = _listener(rx)
    senders = [_sender(tx, a) for a in SENDERS]
    receiver = UdpBatchReceiver(64, 1 << 16)
    try:
        sent = []
        got: list[Datagram] = []
        for n in range(300):  # more than a few bursts; sizes from 2 bytes to a full frame
            which = n % 3 == 0
            payload = n.to_bytes(2, "big") * (1 + n % 700)
            senders[which].sendto(payload, (RECEIVER, PORT))
            sent.append((payload, _int(SENDERS[which])))
            if n % 50 == 49:  # read as we go: the socket's queue is small
                got += _drain(receiver, listener, len(sent) - len(got))
    finally:
        for sock in (listener, *senders):
            sock.close()
    assert [(data, source) for data, source, _size in got] == sent
    assert all(size == 0 for _data, _source, size in got)


def test_a_gro_batch_comes_whole_with_its_segment_size(pair: tuple[str, str]) -> None:
    tx, rx = pair
    listener = _listener(rx)
    sender = _sender(tx, SENDERS[0])
    receiver = UdpBatchReceiver(8, 1 << 16)
    try:
        segments = [bytes([n]) * 1000 for n in range(10)]
        sender.sendmsg([b"".join(segments)], [(SOL_UDP, UDP_SEGMENT, (1000).to_bytes(2,
                                                                                       "little"))],
                       0, (RECEIVER, PORT))
        got = _drain(receiver, listener, 1)
    finally:
        listener.close()
        sender.close()
    assert len(got) == 1
    data, source, size = got[0]
    assert data == b"".join(segments) and source == _int(SENDERS[0]) and size == 1000


def test_nothing_waiting_is_an_empty_burst_not_an_error(pair: tuple[str, str]) -> None:
    _tx, rx = pair
    listener = _listener(rx)
    try:
        assert UdpBatchReceiver(4, 2048).receive(listener.fileno(), 4) == []
    finally:
        listener.close()
