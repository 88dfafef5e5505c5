"""A system port hands a burst of one UDP flow to its interface as one UDP GSO super-frame;
Linux must make exactly the original datagrams of it again. Judges: a UDP socket in the VM
namespace (what an application reads), and the frames Linux's own software segmentation puts
on a wire whose device cannot take UDP GSO, checked by scapy against the datagrams sent."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from support.netns import inside, lab, run
from tunnelnet.datapath.system_port import SystemPort

pytestmark = [pytest.mark.netns, pytest.mark.root]

VM_IP, PEER_IP = "10.0.0.2", "10.0.0.1"
PORT = 5201


@pytest.fixture
def wire() -> Iterator[tuple[str, SystemPort, str]]:
    """(namespace, a system port on tap0, the VM end's MAC): tap0 <-> vm0 (10.0.0.2)."""
    with lab() as made:
        ns = made.netns()
        run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
             "net.ipv6.conf.default.disable_ipv6=1"], netns=ns)
        run(["ip", "link", "add", "tap0", "type", "veth", "peer", "name", "vm0"], netns=ns)
        run(["ip", "addr", "add", f"{VM_IP}/24", "dev", "vm0"], netns=ns)
        for dev in ("tap0", "vm0"):
            run(["ip", "link", "set", dev, "up"], netns=ns)
        mac = run(["cat", "/sys/class/net/vm0/address"], netns=ns).stdout.strip()
        port = inside(ns, lambda: SystemPort("tap0", {}))
        try:
            yield ns, port, mac
        finally:
            port.close()


def datagrams(mac: str, count: int, size: int, *, first_id: int = 1000, zero: bool = False
              ) -> list[bytes]:
    out = []
    for n in range(count):
        udp = UDP(sport=40000, dport=PORT)
        if zero:
            udp.chksum = 0
        pkt = Ether(src="02:00:00:00:00:01", dst=mac) / IP(
            src=PEER_IP, dst=VM_IP, id=first_id + n, flags="DF") / udp / Raw(
            bytes([n]) * size)
        out.append(bytes(pkt))
    return out


def _read_all(sock: socket.socket, want: int) -> list[bytes]:
    got: list[bytes] = []
    sock.settimeout(2.0)
    while len(got) < want:
        try:
            got.append(sock.recv(4096))
        except TimeoutError:
            break
    return got


@pytest.mark.parametrize("count,size", [(64, 64), (10, 1472), (7, 333)])
def test_the_vm_application_reads_every_datagram_in_order(
        wire: tuple[str, SystemPort, str], count: int, size: int) -> None:
    ns, port, mac = wire

    def listener() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((VM_IP, PORT))
        return sock

    sock = inside(ns, listener)
    try:
        sent = datagrams(mac, count, size)
        before = _rx_packets(ns)
        port.send_many(sent)
        got = _read_all(sock, count)
    finally:
        sock.close()
    assert got == [bytes(Ether(f)[Raw]) for f in sent]
    assert port.stats.tx_packets == count
    assert port.stats.tx_bytes == sum(map(len, sent))
    # the VM's interface saw one frame, not `count`: the super-frame went whole
    assert _rx_packets(ns) - before == 1


def _rx_packets(ns: str) -> int:
    return int(run(["cat", "/sys/class/net/vm0/statistics/rx_packets"], netns=ns).stdout)


@pytest.mark.parametrize("zero", [False, True])
def test_linux_cuts_the_super_frame_back_into_the_datagrams_sent(
        wire: tuple[str, SystemPort, str], zero: bool) -> None:
    ns, port, mac = wire
    # tap0 cannot segment UDP now: the kernel's software GSO cuts the super-frame before the
    # veth, with checksums completed as for a NIC without offloads
    run(["ethtool", "-K", "tap0", "tx-udp-segmentation", "off", "tx", "off"], netns=ns)

    def capture() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        sock.bind(("vm0", 0x0800))  # host order here; socket() wants network order
        return sock

    cap = inside(ns, capture)
    try:
        sent = datagrams(mac, 20, 100, zero=zero)
        port.send_many(sent)
        cap.settimeout(2.0)
        seen: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(seen) < len(sent) and time.monotonic() < deadline:
            try:
                frame = cap.recv(4096)
            except TimeoutError:
                break
            if Ether(frame).haslayer(UDP) and Ether(frame)[UDP].dport == PORT:
                seen.append(frame)
    finally:
        cap.close()
    assert len(seen) == len(sent)
    for wire_frame, original in zip(seen, sent, strict=True):
        got, want = Ether(wire_frame), Ether(original)
        assert got[Raw].load == want[Raw].load
        assert got[IP].id == want[IP].id and got[IP].len == want[IP].len
        assert got[IP].ttl == want[IP].ttl and got[IP].flags == want[IP].flags
        # every checksum on the wire is valid (scapy recomputes them with the fields zeroed)
        fresh = Ether(wire_frame)
        del fresh[IP].chksum
        del fresh[UDP].chksum
        fresh = Ether(bytes(fresh))
        assert got[IP].chksum == fresh[IP].chksum
        assert got[UDP].chksum == fresh[UDP].chksum
        if not zero:
            assert wire_frame == original  # byte for byte what was sent


def test_datagrams_gro_would_not_merge_go_one_by_one(
        wire: tuple[str, SystemPort, str]) -> None:
    ns, port, mac = wire

    def listener() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((VM_IP, PORT))
        return sock

    sock = inside(ns, listener)
    try:
        sent = datagrams(mac, 6, 80)
        bad = bytearray(sent[3])
        bad[-1] ^= 0xFF  # its UDP checksum no longer holds: the VM's stack must drop it
        sent[3] = bytes(bad)
        before = _rx_packets(ns)
        port.send_many(sent)
        got = _read_all(sock, 5)
    finally:
        sock.close()
    assert got == [bytes(Ether(f)[Raw]) for n, f in enumerate(sent) if n != 3]
    assert _rx_packets(ns) - before == 6
