"""The demo data centre on real namespaces: reachability, segregation seen from the attacker's
side, an underlay that carries nothing but tunnels, and a lab down that leaves nothing.

Expectations come from the design, not from our output: VMs of one network reach each other
(same host and across hosts, VXLAN and GRE), and no frame of one tenant reaches another's
VM, even with identical addresses. tshark judges the underlay capture.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.lab_cli import namespaces_of, run_lab, running_lab
from support.tools import require_tool

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.toml"
# our own namespace prefix: the test's lab can be up beside a developer's `make demo` lab
PREFIX = f"tnd{os.getpid() % 10000}"


def _tn(lab_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    require_tool("tcpdump")
    lab_dir = tmp_path_factory.mktemp("lab")
    # down leaves nothing: no namespace, no daemon of this lab (running_lab checks both)...
    with running_lab(PREFIX, DEMO, lab_dir):
        status = json.loads(_tn(lab_dir, "status", "--json").stdout)
        yield {"dir": lab_dir, "status": status}
    assert not (lab_dir / "state.json").exists()  # ...and no state file


def _vm(lab: dict[str, object], name: str) -> dict[str, object]:
    status = lab["status"]
    assert isinstance(status, dict)
    return next(v for v in status["vms"] if v["name"] == name)


def test_every_vm_port_is_active_and_gets_its_network_mtu(lab: dict[str, object]) -> None:
    status = lab["status"]
    assert isinstance(status, dict)
    assert all(hv["agent_alive"] for hv in status["hypervisors"])
    for vm in status["vms"]:
        assert vm["port_status"] == "ACTIVE"
        # RFC 7348 overhead: 1500 - 50 for VXLAN; GRE with key 1500 - 42
        assert vm["mtu"] == {"red-net": 1450, "blue-net": 1458}[vm["network"]]


def test_verify_matrix_same_network_reachable_others_isolated_and_underlay_only_tunnels(
        lab: dict[str, object]) -> None:
    require_tool("tshark")
    lab_dir = lab["dir"]
    assert isinstance(lab_dir, Path)
    pcap = lab_dir / "underlay.pcap"
    capture = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-underlay", "tcpdump", "-i",
                                "br-underlay", "-U", "-w", str(pcap), "-c", "20000"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        verify = _tn(lab_dir, "verify", "--json")
    finally:
        time.sleep(0.5)
        capture.terminate()
        capture.wait(timeout=10)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    pairs = json.loads(verify.stdout)["pairs"]
    assert len(pairs) == 30
    tenant = {v["name"]: v["network"] for v in lab["status"]["vms"]}  # type: ignore[index]
    for pair in pairs:
        assert pair["reached"] == (tenant[pair["src"]] == tenant[pair["dst"]]), pair

    hv_ips = {hv["ip"] for hv in lab["status"]["hypervisors"]}  # type: ignore[index]
    fields = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", "-E", "separator=|", "-e",
         "frame.protocols", "-e", "ip.src", "-e", "ip.dst", "-e", "vxlan.vni", "-e",
         "gre.key"], capture_output=True, text=True, timeout=120, check=True).stdout
    lines = [line.split("|") for line in fields.splitlines() if line]
    assert lines, "the capture saw no packet at all"
    kinds: dict[str, int] = {}
    for protocols, src, dst, vni, key in lines:
        layers = protocols.split(":")
        if "arp" in layers:
            kinds["arp"] = kinds.get("arp", 0) + 1
            continue
        if "bfd" in layers:  # the agents' BFD sessions: tunnel key 0, no tenant's frame
            assert (vni or key or "0").split(",")[0] in ("0", "0x00000000"), protocols
            continue
        assert src.split(",")[0] in hv_ips and dst.split(",")[0] in hv_ips, protocols
        if "vxlan" in layers:
            assert int(vni.split(",")[0]) == 1001
            kinds["vxlan"] = kinds.get("vxlan", 0) + 1
        elif "gre" in layers:
            assert int(key.split(",")[0], 0) == 2002
            kinds["gre"] = kinds.get("gre", 0) + 1
        else:
            pytest.fail(f"non-tunnel packet on the underlay: {protocols} {src} -> {dst}")
    assert kinds.get("vxlan", 0) > 0 and kinds.get("gre", 0) > 0


_SNIFF = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind(("eth0", 0)); s.settimeout(0.2)
    marker, end, seen = sys.argv[1].encode(), time.monotonic() + float(sys.argv[2]), 0
    print("ready", flush=True)
    while time.monotonic() < end:
        try:
            frame = s.recv(65535)
        except TimeoutError:
            continue
        seen += marker in frame
    print(seen)
""")


def _sniff(vm_ns: str, marker: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", vm_ns, sys.executable, "-c", _SNIFF,
                             marker, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _send_from(vm_ns: str, frames_hex: list[str]) -> None:
    script = textwrap.dedent("""
        import socket, sys
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind(("eth0", 0))
        for _ in range(5):
            for h in sys.argv[1:]:
                s.send(bytes.fromhex(h))
    """)
    subprocess.run(["ip", "netns", "exec", vm_ns, sys.executable, "-c", script, *frames_hex],
                   check=True, timeout=30)


def _attack_frames(attacker: dict[str, object], victim: dict[str, object],
                   victim_hv_ip: str, marker: bytes) -> list[str]:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import GRE, Dot1Q, Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw

    inner = (Ether(src=str(attacker["mac"]), dst=str(victim["mac"]))
             / IP(src=str(attacker["ip"]), dst=str(victim["ip"])) / UDP(dport=9) / Raw(marker))
    frames = []
    # forged 802.1Q tags: every local VLAN a small host could give the victim's network
    for vid in (1, 2, 3, 4095):
        frames.append(Ether(src=str(attacker["mac"]), dst=str(victim["mac"])) / Dot1Q(vlan=vid)
                      / IP(src=str(attacker["ip"]), dst=str(victim["ip"])) / UDP(dport=9)
                      / Raw(marker))
        frames.append(Ether(src=str(attacker["mac"]), dst="ff:ff:ff:ff:ff:ff")
                      / Dot1Q(vlan=vid) / Raw(marker))
    # hand-made tunnel packets carrying the victim network's VNI and GRE key, addressed to
    # the victim's hypervisor, broadcast in the attacker's own network
    outer = Ether(src=str(attacker["mac"]), dst="ff:ff:ff:ff:ff:ff") / IP(
        src=str(attacker["ip"]), dst=victim_hv_ip)
    frames.append(outer / UDP(sport=40000, dport=4789) / VXLAN(vni=2002) / inner)
    frames.append(outer / UDP(sport=40000, dport=4789) / VXLAN(vni=1001) / inner)
    frames.append(outer / GRE(key_present=1, key=2002, proto=0x6558) / inner)
    return [bytes(f).hex() for f in frames]


@pytest.mark.parametrize(("attacker", "victim"), [("red1", "blue1"), ("red3", "blue3"),
                                                   ("blue2", "red3")])
def test_forged_tags_and_hand_made_tunnel_packets_reach_no_other_tenant(
        lab: dict[str, object], attacker: str, victim: str) -> None:
    att, vic = _vm(lab, attacker), _vm(lab, victim)
    hv_ip = next(hv["ip"] for hv in lab["status"]["hypervisors"]  # type: ignore[index]
                 if hv["name"] == vic["hypervisor"])
    marker = f"tn-attack-{os.getpid()}-{attacker}".encode()
    sniffer = _sniff(f"{PREFIX}-vm-{victim}", marker.decode(), 4.0)
    _send_from(f"{PREFIX}-vm-{attacker}", _attack_frames(att, vic, hv_ip, marker))
    out, _ = sniffer.communicate(timeout=20)
    assert int(out.strip().splitlines()[-1]) == 0, f"{victim} saw {attacker}'s frames"


def test_a_same_network_frame_with_the_marker_does_arrive(lab: dict[str, object]) -> None:
    """The attack test's instrument works: a plain frame to a same-network VM is seen."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    src, dst = _vm(lab, "red1"), _vm(lab, "red3")
    marker = f"tn-control-{os.getpid()}".encode()
    sniffer = _sniff(f"{PREFIX}-vm-red3", marker.decode(), 4.0)
    frame = (Ether(src=str(src["mac"]), dst=str(dst["mac"]))
             / IP(src=str(src["ip"]), dst=str(dst["ip"])) / UDP(dport=9) / Raw(marker))
    _send_from(f"{PREFIX}-vm-red1", [bytes(frame).hex()])
    out, _ = sniffer.communicate(timeout=20)
    assert int(out.strip().splitlines()[-1]) >= 1


def test_taps_are_named_as_nova_names_them_and_status_shows_tunnel_remotes(
        lab: dict[str, object]) -> None:
    status = lab["status"]
    assert isinstance(status, dict)
    hv_ips = {hv["name"]: hv["ip"] for hv in status["hypervisors"]}
    for vm in status["vms"]:
        # Nova: "tap" + the first 11 characters of the port id; the device is on its host
        assert vm["tap"] == "tap" + vm["port_id"][:11]
        link = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-{vm['hypervisor']}", "ip",
                               "link", "show", vm["tap"]], capture_output=True, text=True,
                              check=False)
        assert link.returncode == 0, link.stderr
    for hv in status["hypervisors"]:
        assert set(hv["tunnel_remotes"]) == set(hv["tunnels"]) != set()
        assert set(hv["tunnel_remotes"].values()) <= set(hv_ips.values()) - {hv["ip"]}
    text = _tn(lab["dir"], "status").stdout  # type: ignore[arg-type]
    assert "HYPERVISOR" in text and "TUNNELS (port -> remote IP)" in text
    assert f"-> {hv_ips['hv2']} (hv2)" in text


@pytest.mark.parametrize(("ip", "words"), [
    ("10.9.9.9", "not in red-net's subnet 10.0.0.0/24"),
    ("10.0.0.300", "is not an IP address"),
    ("10.0.0.11", "taken on red-net (by red1)"),
])
def test_a_bad_add_vm_is_a_usage_error_and_builds_nothing(
        lab: dict[str, object], ip: str, words: str) -> None:
    lab_dir = lab["dir"]
    assert isinstance(lab_dir, Path)
    bad = _tn(lab_dir, "add-vm", "red9", "--network", "red-net", "--hypervisor", "hv1",
              "--ip", ip)
    assert bad.returncode == 2 and words in bad.stderr, bad.stderr
    assert f"{PREFIX}-vm-red9" not in namespaces_of(PREFIX)
    status = _tn(lab_dir, "status", "--json")
    assert status.returncode == 0
    assert "red9" not in {vm["name"] for vm in json.loads(status.stdout)["vms"]}


@pytest.mark.parametrize(("args", "words"), [
    (("ping", "red1", "nobody"), "no VM named 'nobody'"),
    (("exec", "ghost", "--", "true"), "no VM named 'ghost'"),
    (("stop", "vswitchd-hv9"), "no daemon named 'vswitchd-hv9'"),
])
def test_naming_what_the_lab_has_not_is_a_usage_error(
        lab: dict[str, object], args: tuple[str, ...], words: str) -> None:
    lab_dir = lab["dir"]
    assert isinstance(lab_dir, Path)
    bad = _tn(lab_dir, *args)
    assert bad.returncode == 2 and words in bad.stderr, bad.stderr
