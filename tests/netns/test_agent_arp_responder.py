"""With l2population and the ARP responder (Neutron's br-tun table 21), an ARP request for a
VM on another hypervisor is answered by the local br-tun: the answer carries the remote VM's
MAC, and the request never crosses a tunnel (the remote VM does not see it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.lab_cli import running_lab

pytestmark = pytest.mark.netns

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "agent.toml"
PREFIX = f"tnr{os.getpid() % 10000}"


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    directory = tmp_path_factory.mktemp("arplab")
    with running_lab(PREFIX, TOPOLOGY, directory, "--arp-responder"):
        yield json.loads((directory / "state.json").read_text())


_ASK = textwrap.dedent("""
    import socket, sys, time
    from scapy.layers.l2 import ARP, Ether
    mac, ip, target = sys.argv[1], sys.argv[2], sys.argv[3]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind(("eth0", 0)); s.settimeout(0.2)
    request = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=ip,
                                                            pdst=target)
    end = time.monotonic() + 3
    s.send(bytes(request))
    while time.monotonic() < end:
        try:
            frame = Ether(s.recv(2048))
        except TimeoutError:
            continue
        if ARP in frame and frame[ARP].op == 2 and frame[ARP].psrc == target:
            print(frame[ARP].hwsrc, frame[Ether].src, frame[ARP].hwdst, frame[ARP].pdst)
            break
""")

_COUNT_ARP = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind(("eth0", 0)); s.settimeout(0.2)
    target = socket.inet_aton(sys.argv[1]); seen = 0
    print("ready", flush=True)
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        try:
            frame = s.recv(2048)
        except TimeoutError:
            continue
        seen += frame[20:22] == b"\\x00\\x01" and frame[38:42] == target
    print(seen)
""")


def test_arp_request_for_a_remote_vm_is_answered_locally_and_never_crosses_a_tunnel(
        state: dict[str, object]) -> None:
    vms = state["vms"]
    assert isinstance(vms, dict)
    asker, remote = vms["r1"], vms["r2"]  # r1 on hv1, r2 on hv2
    watcher = subprocess.Popen(["ip", "netns", "exec", remote["netns"], sys.executable, "-c",
                                _COUNT_ARP, remote["ip"], "4"], stdout=subprocess.PIPE,
                               text=True)
    assert watcher.stdout is not None and watcher.stdout.readline().strip() == "ready"
    answer = subprocess.run(["ip", "netns", "exec", asker["netns"], sys.executable, "-c", _ASK,
                             asker["mac"], asker["ip"], remote["ip"]], capture_output=True,
                            text=True, timeout=30, check=True).stdout.split()
    seen_remote, _ = watcher.communicate(timeout=20)
    # RFC 826 reply: sender = the remote VM's MAC and IP, target = the asker
    assert answer == [remote["mac"], remote["mac"], asker["mac"], asker["ip"]]
    assert int(seen_remote.strip().splitlines()[-1]) == 0
