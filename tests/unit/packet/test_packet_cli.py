"""`tunnelnet packet decode|encap|decap`: scapy builds the input or judges the output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

import pytest
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import GRE, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from tunnelnet.cli.main import main

VM1, VM2 = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"
INNER = Ether(src=VM1, dst=VM2) / Dot1Q(vlan=3, prio=2) / IP(src="10.0.0.1", dst="10.0.0.2") / (
    ICMP(id=1, seq=2) / Raw(b"ping"))
VXLAN_FRAME = Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / IP(
    src="192.0.2.1", dst="192.0.2.2") / UDP(sport=50000, dport=4789) / VXLAN(vni=1001,
                                                                            flags=0x08) / INNER
GRE_FRAME = Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / IP(
    src="192.0.2.1", dst="192.0.2.2") / GRE(key_present=1, key=77, proto=0x6558) / INNER

GENEVE_FRAME = Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / IP(
    src="192.0.2.1", dst="192.0.2.2") / UDP(sport=50000, dport=6081) / GENEVE(
    vni=5001, proto=0x6558, options=[GeneveOptions(classid=0x0102, type=0x01,
                                                   data=b"\x00\x00\x00\x2a")]) / INNER


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_decode_json_gives_the_layer_shapes_outer_to_inner(
        capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "packet", "decode", "--json", bytes(VXLAN_FRAME).hex())
    assert status == 0
    layers = json.loads(out)["layers"]
    assert [layer["name"] for layer in layers] == [
        "ethernet", "ipv4", "udp", "vxlan", "ethernet", "vlan", "ipv4", "icmp", "payload"]
    eth, ip, udp, vx, inner_eth, tag, inner_ip, icmp, _ = layers
    assert (eth["src"], eth["dst"], eth["type"]) == ("02:00:00:00:01:01", "02:00:00:00:01:02",
                                                     0x0800)
    assert (ip["src"], ip["dst"], ip["proto"]) == ("192.0.2.1", "192.0.2.2", 17)
    assert (udp["sport"], udp["dport"]) == (50000, 4789)
    assert vx["vni"] == 1001
    assert (inner_eth["src"], inner_eth["dst"], inner_eth["type"]) == (VM1, VM2, 0x8100)
    assert (tag["vid"], tag["pcp"]) == (3, 2)
    assert (inner_ip["src"], inner_ip["proto"]) == ("10.0.0.1", 1)
    assert (icmp["type"], icmp["id"], icmp["seq"]) == (8, 1, 2)


def test_decode_json_of_gre_carries_key_and_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "packet", "decode", "--json", bytes(GRE_FRAME).hex())
    gre = json.loads(out)["layers"][2]
    assert status == 0
    assert (gre["name"], gre["key"], gre["protocol"]) == ("gre", 77, 0x6558)


def test_decode_text_shows_every_layer_with_the_inner_frame_indented(
        capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "packet", "decode", bytes(VXLAN_FRAME).hex())
    lines = out.splitlines()
    assert status == 0
    assert lines[0].startswith("Ethernet  02:00:00:00:01:01 -> 02:00:00:00:01:02")
    assert lines[3].startswith("VXLAN     vni 1001")
    assert lines[4].startswith("  Ethernet  fa:16:3e:00:00:01 -> fa:16:3e:00:00:02")
    assert "vid 3" in lines[5]
    assert "type 8 (echo request)" in lines[7]


def test_hex_may_contain_whitespace_and_colons_and_come_from_stdin(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    raw = bytes(INNER)
    spaced = " ".join(f"{b:02x}" for b in raw[:20]) + "\n" + raw[20:].hex(":")
    status, out, _ = run(capsys, "packet", "decode", "--json", spaced)
    assert status == 0
    expected = out
    monkeypatch.setattr(sys, "stdin", io.StringIO(spaced))
    status, out, _ = run(capsys, "packet", "decode", "--json", "-")
    assert (status, out) == (0, expected)


def test_encap_output_is_what_scapy_dissects_as_vxlan(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "packet", "encap", "--type", "vxlan", "--key", "5000",
                         "--outer-src", "198.51.100.1", "--outer-dst", "198.51.100.2",
                         "--outer-smac", "02:aa:00:00:00:01", "--outer-dmac",
                         "02:aa:00:00:00:02", bytes(INNER).hex())
    assert status == 0
    pkt = Ether(bytes.fromhex(out.strip()))
    assert (pkt.src, pkt.dst) == ("02:aa:00:00:00:01", "02:aa:00:00:00:02")
    assert (pkt[IP].src, pkt[IP].dst, pkt[UDP].dport, pkt[VXLAN].vni) == (
        "198.51.100.1", "198.51.100.2", 4789, 5000)
    assert bytes(pkt[VXLAN].payload) == bytes(INNER)


def test_encap_output_is_what_scapy_dissects_as_gre(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "packet", "encap", "--type", "gre", "--key", "4000000000",
                         "--outer-src", "198.51.100.1", "--outer-dst", "198.51.100.2",
                         "--json", bytes(INNER).hex())
    assert status == 0
    data = json.loads(out)
    pkt = Ether(bytes.fromhex(data["frame"]))
    assert (data["type"], data["key"], data["overhead"]) == ("gre", 4000000000, 42)
    assert (pkt[GRE].key, pkt[GRE].proto) == (4000000000, 0x6558)
    assert data["length"] == len(bytes(INNER)) + 42


@pytest.mark.parametrize(("frame", "kind", "key"), [(VXLAN_FRAME, "vxlan", 1001),
                                                    (GENEVE_FRAME, "geneve", 5001),
                                                    (GRE_FRAME, "gre", 77)])
def test_decap_prints_the_key_and_the_inner_frame(capsys: pytest.CaptureFixture[str],
                                                   frame: Any, kind: str, key: int) -> None:
    status, out, _ = run(capsys, "packet", "decap", bytes(frame).hex())
    assert status == 0
    assert out.splitlines() == [f"{kind} key {key}", bytes(INNER).hex()]
    status, out, _ = run(capsys, "packet", "decap", "--json", bytes(frame).hex())
    assert json.loads(out) == {"type": kind, "key": key, "inner": bytes(INNER).hex()}


def test_decode_follows_geneve_on_udp_6081_and_shows_its_options(
        capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "packet", "decode", "--json", bytes(GENEVE_FRAME).hex())
    assert status == 0
    layers = json.loads(out)["layers"]
    assert [layer["name"] for layer in layers][:5] == [
        "ethernet", "ipv4", "udp", "geneve", "ethernet"]
    assert layers[3]["vni"] == 5001
    assert layers[3]["options"] == [{"class": 0x0102, "type": 1, "critical": False,
                                     "data": "0000002a"}]
    status, out, _ = run(capsys, "packet", "decode", bytes(GENEVE_FRAME).hex())
    assert "Geneve    vni 5001  protocol 0x6558" in out
    assert "option class 0x0102 type 0x01 data 0000002a" in out


def test_encap_geneve_is_what_scapy_reads_as_geneve(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "packet", "encap", "--type", "geneve", "--key", "16777215",
                         "--outer-src", "198.51.100.1", "--outer-dst", "198.51.100.2",
                         "--json", bytes(INNER).hex())
    assert status == 0
    data = json.loads(out)
    pkt = Ether(bytes.fromhex(data["frame"]))
    assert (data["type"], data["key"], data["overhead"]) == ("geneve", 0xFFFFFF, 50)
    assert (pkt[UDP].dport, pkt[GENEVE].vni, pkt[GENEVE].proto) == (6081, 0xFFFFFF, 0x6558)
    assert pkt[UDP].sport >= 49152 and bytes(pkt[GENEVE].payload) == bytes(INNER)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["decode", "00zz"], "not hexadecimal: 'z'"),
        (["decode", "001"], "odd number of hex digits"),
        (["decode", "0011"], "Ethernet header truncated: 2 of 14 bytes at offset 0"),
        (["decap", bytes(INNER).hex()], "not a tunnel frame"),
        (["decap", bytes(VXLAN_FRAME).hex()[:-20]], "IPv4 total length"),
        (["decap", bytes(Ether() / IP() / UDP(dport=53) / Raw(bytes(30))).hex()],
         "UDP destination port 53 is no tunnel kind's"),
        (["encap", "--type", "vxlan", "--key", "16777216", "--outer-src", "192.0.2.1",
          "--outer-dst", "192.0.2.2", bytes(INNER).hex()], "VNI 16777216 does not fit"),
        (["encap", "--type", "gre", "--key", "1", "--outer-src", "192.0.2.1",
          "--outer-dst", "192.0.2.300", bytes(INNER).hex()], "outer destination"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_1(capsys: pytest.CaptureFixture[str],
                                                    args: list[str], message: str) -> None:
    status, out, err = run(capsys, "packet", *args)
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1
    assert message in err


def test_the_installed_command_fails_without_a_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "tunnelnet", "packet", "decode", "0800"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "truncated" in proc.stderr
