"""`tunnelnet demo`: what it shows is true of the bytes (scapy judges them)."""

from __future__ import annotations

import json

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN

from tunnelnet.cli.main import main


def test_demo_prints_each_encapsulation_with_its_overhead_and_mtu(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    # Neutron's count: what the underlay's IP MTU must hold beyond the VM's IP packet; the
    # outer Ethernet header is no part of an IP MTU, the inner one rides inside the tunnel
    assert "outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 = 50 bytes" in out
    assert "1500 - 50 = 1450" in out
    assert "outer IPv4 20 + GRE with key 8 + inner Ethernet 14 = 42 bytes" in out
    assert "1500 - 42 = 1458" in out
    assert "outer Ethernet 14 +" not in out
    assert "VXLAN     vni 1001" in out
    assert "GRE       key 1001  protocol 0x6558" in out
    assert "inner frame identical: yes" in out


def test_demo_json_frames_are_what_scapy_sees(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    inner = bytes.fromhex(data["inner"]["hex"])
    assert Ether(inner)[ICMP].type == 8
    vx = Ether(bytes.fromhex(data["vxlan"]["hex"]))
    assert (vx[UDP].dport, vx[VXLAN].vni, bytes(vx[VXLAN].payload)) == (4789, 1001, inner)
    assert data["vxlan"]["overhead"] == len(bytes(vx)) - len(inner) == 50
    gr = Ether(bytes.fromhex(data["gre"]["hex"]))
    assert (gr[IP].proto, gr[GRE].key, bytes(gr[GRE].payload)) == (47, 1001, inner)
    assert data["gre"]["overhead"] == 42
    assert (data["vxlan"]["vm_mtu"], data["gre"]["vm_mtu"]) == (1450, 1458)
    # the count against the IP MTU, checked on the bytes: the outer IP packet is longer than
    # the VM's by exactly it, for its parts are the inner Ethernet header and what wraps it
    for kind, frame in (("vxlan", vx), ("gre", gr)):
        parts = data[kind]["mtu_overhead"]
        assert "inner Ethernet" in parts and "outer Ethernet" not in parts
        assert frame[IP].len - Ether(inner)[IP].len == sum(parts.values()), kind
    ports = list(data["source_ports"].values())
    assert ports[0] == ports[1] == vx[UDP].sport
    assert ports[2] != ports[0]
    assert all(49152 <= p <= 65535 for p in ports)
