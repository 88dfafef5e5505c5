"""The MTU doctor on a namespace lab (topologies/mtu.toml: a VXLAN and a GRE network across
two hypervisors on a 1500-byte underlay). The guests ignore the network's MTU, as a guest that
ignores the DHCP MTU option does: their NICs (and the veths' host ends, which a tap would not
limit) are set to 1500.

The judges are Linux's: ping's own words for the ICMP error it got ("Frag needed and DF set
(mtu = 1450)", "Packet too big: mtu=1450"), the path MTU the kernel learned (`ip route get`),
and a 10 MB TCP transfer finishing, counted by the receiver, where a black hole stalls it. The
expected MTUs are Neutron's network MTUs (underlay 1500 minus VXLAN's 50 or GRE's 42 bytes of
overhead).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.lab_cli import lab_state, run_lab
from support.mtu_lab import PAIRS, V6, in_netns, mtu_lab, vm_netns
from support.text import unwrapped

pytestmark = pytest.mark.netns

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "mtu.toml"
PREFIX = f"tnM{os.getpid() % 10000}"


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with mtu_lab(PREFIX, TOPOLOGY, tmp_path_factory.mktemp("mtulab")) as directory:
        yield directory


def _ofctl(lab_dir: Path, hv: str, *args: str) -> Any:
    rundir = lab_state(lab_dir)["hypervisors"][hv]["rundir"]
    proc = run_lab(PREFIX, lab_dir, "--rundir", rundir, *args, "--json", command="ofctl")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_ping_with_df_is_told_the_networks_mtu_and_the_kernel_learns_it(
        lab_dir: Path, kind: str) -> None:
    src, dst, mtu = PAIRS[kind]
    ns, ip = vm_netns(lab_dir, src), lab_state(lab_dir)["vms"][dst]["ip"]
    assert in_netns(ns, "ping", "-c", "1", "-W", "2", ip).returncode == 0  # small ones pass
    in_netns(ns, "ip", "route", "flush", "cache")
    big = in_netns(ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1472", ip)
    assert f"Frag needed and DF set (mtu = {mtu})" in big.stdout, big.stdout + big.stderr
    route = in_netns(ns, "ip", "route", "get", ip).stdout
    assert f"mtu {mtu}" in route, route
    # the same size without -M do: the sender now fragments to the learned MTU, and it passes
    assert in_netns(ns, "ping", "-c", "1", "-W", "2", "-s", "1472", ip).returncode == 0
    # counted per tunnel port and reason on the sender's hypervisor
    drops = _ofctl(lab_dir, "hv1", "dump-drops", "br-tun")
    ports = [p for p, reasons in drops["oversize"].items() if p.startswith(kind)]
    assert ports and drops["oversize"][ports[0]]["mtu_frag_needed"] >= 1, drops
    (port,) = _ofctl(lab_dir, "hv1", "dump-ports", "br-tun", ports[0])
    assert port["mtu"] == mtu and port["oversize"]["mtu_frag_needed"] >= 1
    # and the trace says it, and why the MTU is what it is
    trace = run_lab(PREFIX, lab_dir, "--dir", str(lab_dir), src, dst, "--size", "1472",
                    command="trace")
    assert trace.returncode == 1, trace.stdout + trace.stderr  # not delivered
    said = unwrapped(trace.stdout)
    assert f"'fragmentation needed' (mtu {mtu})" in said, trace.stdout
    assert f"{mtu} = underlay MTU 1500 - {1500 - mtu} (outer IPv4 20" in said, trace.stdout


@pytest.mark.parametrize("kind", list(PAIRS))
def test_a_10_mb_tcp_transfer_completes_through_path_mtu_discovery(
        lab_dir: Path, kind: str) -> None:
    src, dst, mtu = PAIRS[kind]
    _transfer(lab_dir, src, dst, lab_state(lab_dir)["vms"][dst]["ip"], mtu)


def test_ipv6_ping_is_told_packet_too_big_and_tcp_over_ipv6_completes(lab_dir: Path) -> None:
    ns = vm_netns(lab_dir, "vx1")
    in_netns(ns, "ip", "-6", "route", "flush", "cache")
    assert in_netns(ns, "ping", "-6", "-c", "1", "-W", "3", V6["vx2"]).returncode == 0
    big = in_netns(ns, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1452",
                   V6["vx2"])
    assert "Packet too big: mtu=1450" in big.stdout, big.stdout + big.stderr
    route = in_netns(ns, "ip", "-6", "route", "get", V6["vx2"]).stdout
    assert "mtu 1450" in route, route
    drops = _ofctl(lab_dir, "hv1", "dump-drops", "br-tun")
    assert any(r.get("mtu_packet_too_big", 0) >= 1 for r in drops["oversize"].values()), drops
    _transfer(lab_dir, "vx1", "vx2", V6["vx2"], 1450)


# A plain TCP transfer, counted at both ends: the receiver prints what it got, and a stall
# (the black hole: full-size segments lost without a word) ends it by timeout
_RECEIVER = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
with socket.socket(family, socket.SOCK_STREAM) as listener:
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((sys.argv[1], 5301))
    listener.listen(1)
    print("listening", flush=True)
    listener.settimeout(30)
    conn, _ = listener.accept()
    conn.settimeout(20)
    got = 0
    while chunk := conn.recv(1 << 16):
        got += len(chunk)
    conn.sendall(str(got).encode())
    print(got, flush=True)
"""
_SENDER = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
with socket.create_connection((sys.argv[1], 5301), timeout=20) as conn:
    conn.sendall(bytes(1 << 16) * int(sys.argv[2]))
    conn.shutdown(socket.SHUT_WR)
    print(conn.recv(64).decode(), flush=True)
"""
TEN_MB = 160  # chunks of 64 KiB


def _transfer(lab_dir: Path, src: str, dst: str, address: str, mtu: int) -> None:
    """10 MB over TCP from SRC to DST, the path MTU forgotten first: it must be found."""
    client_ns, server_ns = vm_netns(lab_dir, src), vm_netns(lab_dir, dst)
    family = "-6" if ":" in address else "-4"
    in_netns(client_ns, "ip", family, "route", "flush", "cache")
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c",
                               _RECEIVER, address], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "listening\n"
        client = in_netns(client_ns, sys.executable, "-c", _SENDER, address, str(TEN_MB),
                          timeout=60)
        assert client.returncode == 0, client.stderr[-800:]
        assert client.stdout.strip() == str(TEN_MB << 16)  # all of it, by the receiver
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(timeout=10)
    route = in_netns(client_ns, "ip", family, "route", "get", address).stdout
    assert f"mtu {mtu}" in route, route  # found by path MTU discovery, not configured
