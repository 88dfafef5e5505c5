"""The port meter in the VM ports' socket filter (issue 21): a port's frames without a kernel
entry reach the Python path's socket at most at the meter's rate, what is kept back is counted
against that port alone, and another port's frames all arrive.

Two veth pairs in one namespace stand for two VM ports; the test sends raw frames into each
from the VM side and reads the host side through AF_PACKET sockets carrying the real filter,
as vswitchd opens them. Judge: the frames the test sent and its own sockets received.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from support.netns import Lab, inside, run
from tunnelnet.datapath.kernel_fastpath import REPLAY_OBJECT, KernelFastPath
from tunnelnet.datapath.kernel_maps import Inner

pytestmark = pytest.mark.netns

ETH_P_ALL = 0x0003
MARK = 0x88B5  # local experimental EtherType: nothing else in the namespace sends it
RATE, BURST = 100.0, 10.0


@pytest.fixture
def ports() -> Iterator[tuple[str, KernelFastPath]]:
    if not REPLAY_OBJECT.exists():
        pytest.fail(f"{REPLAY_OBJECT} is not built: run `make bpf`")
    made = Lab()
    fastpath = KernelFastPath.load()
    try:
        ns = made.netns("meter")
        for name in ("flood", "quiet"):
            made.veth(ns, f"{name}-h", ns, f"{name}-vm")
            for end in (f"{name}-h", f"{name}-vm"):
                run(["ip", "-n", ns, "link", "set", end, "up"])
        yield ns, fastpath
    finally:
        made.close()
        fastpath.close()


def _sockets(ns: str, fastpath: KernelFastPath, name: str) -> tuple[socket.socket,
                                                                     socket.socket]:
    """(the VM side's socket to send with, the host side's filtered one to read with)."""
    def make() -> tuple[socket.socket, socket.socket]:
        send = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        send.bind((f"{name}-vm", 0))
        read = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(MARK))
        read.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
        read.bind((f"{name}-h", MARK))
        return send, read
    send, read = inside(ns, make)
    fastpath.filter_socket(read)
    read.settimeout(0.3)
    return send, read


def _frame(i: int, src: bytes | None = None) -> bytes:
    if src is None:
        src = bytes([0x02]) + os.urandom(5)  # a random unicast source, as a MAC flood sends
    return b"\xff" * 6 + src + MARK.to_bytes(2, "big") + i.to_bytes(4, "big") + bytes(42)


def _drain(sock: socket.socket) -> int:
    got = 0
    while True:
        try:
            sock.recv(2048)
        except TimeoutError:
            return got
        got += 1


def _ifindex(ns: str, name: str) -> int:
    return int(run(["cat", f"/sys/class/net/{name}/ifindex"], netns=ns).stdout)


def test_a_flooding_port_reaches_python_at_the_meters_rate_and_no_other_does(
        ports: tuple[str, KernelFastPath]) -> None:
    ns, fastpath = ports
    fastpath.set_port_meter(RATE, BURST)
    flood_send, flood_read = _sockets(ns, fastpath, "flood")
    quiet_send, quiet_read = _sockets(ns, fastpath, "quiet")
    start = time.monotonic()
    for i in range(2000):
        flood_send.send(_frame(i))
        if i % 250 == 0:
            quiet_send.send(_frame(i))  # 8 frames among the flood's, within its own burst
    elapsed = time.monotonic() - start
    flooded, quiet = _drain(flood_read), _drain(quiet_read)
    # the bucket: its burst, then RATE a second (and a few more where CPUs race on it)
    assert BURST <= flooded <= BURST + RATE * elapsed + 8, (flooded, elapsed)
    assert quiet == 8  # its own bucket, untouched by the flood
    counts = fastpath.port_meters()
    flood_ifindex, quiet_ifindex = _ifindex(ns, "flood-h"), _ifindex(ns, "quiet-h")
    assert counts[flood_ifindex] == (flooded, 2000 - flooded)  # (handed up, kept back)
    assert counts[quiet_ifindex] == (8, 0)


def test_without_a_meter_every_frame_reaches_python(ports: tuple[str, KernelFastPath]
                                                    ) -> None:
    ns, fastpath = ports
    fastpath.set_port_meter(0.0, 0.0)
    send, read = _sockets(ns, fastpath, "flood")
    for i in range(2000):
        send.send(_frame(i))
    assert _drain(read) == 2000


def test_a_flow_python_knows_is_never_held_back(ports: tuple[str, KernelFastPath]) -> None:
    """As the walk meter meters only new flows: frames of a flow vswitchd noted as known
    (after its tables answered it) all go up, in the middle of the same port's flood."""
    ns, fastpath = ports
    fastpath.set_port_meter(RATE, BURST)
    known_src = bytes.fromhex("02aabbccddee")
    fastpath.note_python_flow(_ifindex(ns, "flood-h"),
                              Inner("ff:ff:ff:ff:ff:ff", "02:aa:bb:cc:dd:ee", MARK))
    send, read = _sockets(ns, fastpath, "flood")
    start = time.monotonic()
    for i in range(1000):
        send.send(_frame(i))
        send.send(_frame(i, known_src))
    elapsed = time.monotonic() - start
    got = known = 0
    while True:
        try:
            frame = read.recv(2048)
        except TimeoutError:
            break
        got += 1
        known += frame[6:12] == known_src
    assert known == 1000
    assert BURST <= got - known <= BURST + RATE * elapsed + 8  # the flood: metered as ever
