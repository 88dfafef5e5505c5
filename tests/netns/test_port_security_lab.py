"""Port security from the attacker's side, in one namespace lab.

An attacking VM forges frames with scapy: another VM's source MAC, another VM's IP, a
gratuitous ARP for its neighbour's address and one for the gateway's. One attacker (att) sits
on a hypervisor running our switch, the other (mal) on one running Open vSwitch: the agent's
flows must hold on both. The judges are the victims' own Linux
(their ARP caches, `ip -json neigh`) and captures on their taps (tcpdump, read back by scapy),
not our switch: both must show no trace of a forged frame (and an honest control frame sent
alongside must show, so a dead capture cannot pass), while br-int's port-security drop
flows count them (Neutron's ARP_SPOOF_TABLE 24 and MAC_SPOOF_TABLE 25). A VIP in an allowed
address pair moves between two VMs by gratuitous ARP, as keepalived moves one. Last, port
security switched off on an attacker's port lets the very same forgery through, so the checks
can fail.

The victims accept gratuitous ARP for addresses they do not know yet (arp_accept=1), so a
forged one that got through would leave an entry behind.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import rdpcap

from support.lab_cli import run_lab, running_lab
from support.tools import require_tool

pytestmark = pytest.mark.netns

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "portsec.toml"
PREFIX = f"tnp{os.getpid() % 10000}"
GATEWAY = "10.71.0.1"  # the subnet's first address, where Neutron puts the gateway
VIP = "10.71.0.100"
BROADCAST = "ff:ff:ff:ff:ff:ff"
REPEAT = 4


def _tn(lab_dir: Path, command: str, *args: str, timeout: float = 240
        ) -> subprocess.CompletedProcess[str]:
    proc = run_lab(PREFIX, lab_dir, *args, command=command, timeout=timeout)
    assert proc.returncode in (0, 1), f"{command} {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc


def _ns(ns: str, *argv: str, check: bool = True,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=30, check=check, input=stdin)


@dataclass(frozen=True)
class Vm:
    name: str
    hypervisor: str
    netns: str
    tap: str
    mac: str
    ip: str
    port_id: str


@dataclass
class Lab:
    directory: Path
    state: dict[str, Any]
    vms: dict[str, Vm]

    def api(self) -> Any:
        from tunnelnet.client.http import Client

        return Client(self.state["server_url"], self.state["admin_token"])

    def on_ovs(self, hv: str) -> bool:
        return self.state["hypervisors"][hv].get("switch") == "ovs"

    def flows(self, hv: str) -> list[str]:
        """br-int's flows with counters, from the switch itself (ours, or Open vSwitch's
        ovs-ofctl)."""
        rundir = self.state["hypervisors"][hv]["rundir"]
        if self.on_ovs(hv):
            out = _ovs(rundir, "ovs-ofctl", "--no-names", "dump-flows", "br-int")
        else:
            out = _tn(self.directory, "ofctl", "--rundir", rundir, "dump-flows", "br-int").stdout
        return [line.strip() for line in out.splitlines() if "table=" in line]

    def ofport(self, vm: Vm) -> int:
        rundir = self.state["hypervisors"][vm.hypervisor]["rundir"]
        if self.on_ovs(vm.hypervisor):
            return int(_ovs(rundir, "ovs-vsctl", f"--db=unix:{rundir}/db.sock", "get",
                            "Interface", vm.tap, "ofport"))
        out = _tn(self.directory, "vsctl", "--rundir", rundir, "list-ports", "br-int", "--json")
        return int(next(p["ofport"] for p in json.loads(out.stdout) if p["name"] == vm.tap))


def _ovs(rundir: str, *argv: str) -> str:
    from tunnelnet.lab.ovs_host import ovs_env

    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True,
                          env={**os.environ, **ovs_env(Path(rundir))}).stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_tool("tcpdump")
    require_tool("ovs-vswitchd")
    directory = tmp_path_factory.mktemp("portsec")
    with running_lab(PREFIX, TOPOLOGY, directory):
        state = json.loads((directory / "state.json").read_text())
        vms = {name: Vm(name, v["hypervisor"], v["netns"], v["tap"],
                        v["mac"], v["ip"], v["port_id"])
               for name, v in state["vms"].items()}
        for victim in ("vic", "far"):
            _ns(vms[victim].netns, "sysctl", "-qw", "net.ipv4.conf.eth0.arp_accept=1")
        yield Lab(directory, state, vms)


def _wait(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _ping(src: Vm, ip: str) -> bool:
    return _ns(src.netns, "ping", "-c", "1", "-W", "2", ip, check=False).returncode == 0


def _neigh(vm: Vm) -> dict[str, str]:
    """The VM's ARP cache: IP -> MAC, read from its own kernel."""
    out = _ns(vm.netns, "ip", "-json", "neigh", "show", "dev", "eth0").stdout
    return {e["dst"]: e.get("lladdr", "") for e in json.loads(out or "[]")}


def _holder_mac(lab: Lab, ip: str) -> str | None:
    """The MAC of the port the controller has given `ip` to, if any."""
    with lab.api() as api:
        for port in api.list("port"):
            if any(f.get("ip_address") == ip for f in port.get("fixed_ips", [])):
                return str(port["mac_address"])
    return None


_SEND = """
import socket, sys, time
frames = [bytes.fromhex(line) for line in sys.stdin.read().split()]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(int(sys.argv[1])):
    for frame in frames:
        s.send(frame)
    time.sleep(0.1)
"""


def _send(vm: Vm, frames: list[bytes], repeat: int = REPEAT) -> None:
    _ns(vm.netns, sys.executable, "-c", _SEND, str(repeat),
        stdin="\n".join(f.hex() for f in frames))


@contextmanager
def _capture(vm: Vm, path: Path) -> Iterator[Path]:
    """tcpdump on the far end of the VM's tap, its eth0: what the switch handed the VM. (On
    the hypervisor's side of the veth a capture misses what vswitchd sends, which leaves by
    a packet socket that bypasses the queueing layer where captures are taken.)"""
    proc = subprocess.Popen(["ip", "netns", "exec", vm.netns, "tcpdump", "-n", "-U",
                             "--immediate-mode", "-i", "eth0", "-w", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening" in line, line
        yield path
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def _garp(sender_mac: str, claimed: str, op: int = 1) -> bytes:
    # RFC 5227 section 3: an announcement claims the address as both sender and target
    return bytes(Ether(src=sender_mac, dst=BROADCAST) /
                 ARP(op=op, hwsrc=sender_mac, psrc=claimed, hwdst="00:00:00:00:00:00",
                     pdst=claimed))


def _marked_udp(src_mac: str, src_ip: str, dst: Vm, marker: bytes) -> bytes:
    return bytes(Ether(src=src_mac, dst=dst.mac) / IP(src=src_ip, dst=dst.ip) /
                 UDP(sport=40000, dport=40000) / marker)


def _received(pcap: Path, vm: Vm) -> list[Any]:
    """The frames the VM got (its own answers, which quote what they answer, left out)."""
    return [frame for frame in rdpcap(str(pcap)) if frame[Ether].src != vm.mac]


def _count(pcap: Path, vm: Vm, marker: bytes) -> int:
    return sum(marker in bytes(frame) for frame in _received(pcap, vm))


def _forged_seen(pcap: Path, vm: Vm, att: Vm, marker: bytes, claimed: set[str]) -> list[str]:
    """Frames the VM got that only the forgery could have made."""
    def forged(frame: Any) -> bool:
        if marker in bytes(frame):
            return True
        return ARP in frame and frame[ARP].hwsrc == att.mac and frame[ARP].psrc in claimed

    return [frame.summary() for frame in _received(pcap, vm) if forged(frame)]


def _n_packets(lines: list[str], where: str) -> int:
    (line,) = [x for x in lines if x.split(" actions=")[0].endswith(where)]
    return int(line.split("n_packets=")[1].split(",")[0])


def _attack(lab: Lab, tmp: Path, tag: str, att: Vm,
            *, unprotected: bool = False) -> tuple[dict[str, list[str]], bytes]:
    vic, far = lab.vms["vic"], lab.vms["far"]
    marker = f"tn-forged-{secrets.token_hex(4)}".encode()
    honest = f"tn-honest-{secrets.token_hex(4)}".encode()
    frames = [
        _marked_udp(att.mac, att.ip, far, honest),  # controls: att's own addresses arrive
        _marked_udp(att.mac, att.ip, vic, honest),
        _marked_udp(vic.mac, att.ip, far, marker),  # another VM's source MAC
        _marked_udp(att.mac, vic.ip, far, marker),  # another VM's IP
        _marked_udp(att.mac, far.ip, vic, marker),
        _garp(att.mac, far.ip),  # "far's address is at att's MAC", to everyone
        _garp(att.mac, GATEWAY, op=2),  # the gateway's address, as an unsolicited reply
    ]
    seen: dict[str, list[str]] = {}
    with _capture(vic, tmp / f"{tag}-vic.pcap") as vic_cap, \
            _capture(far, tmp / f"{tag}-far.pcap") as far_cap:
        _send(att, frames)
    for victim, cap in ((vic, vic_cap), (far, far_cap)):
        got = _count(cap, victim, honest)
        if unprotected and victim is vic:
            # the first round's forged source MAC teaches the switches that vic lives behind
            # att's port, so later controls to vic may go there: the attack working. The
            # first round's control is sent before any forgery and must arrive.
            assert got >= 1, f"{victim.name} missed the controls"
        else:
            assert got == REPEAT, f"{victim.name} missed the controls"
        seen[victim.name] = _forged_seen(cap, victim, att, marker, {far.ip, GATEWAY})
    return seen, marker


ATTACKERS = pytest.mark.parametrize("attacker", ["att", "mal"],
                                    ids=["on_our_switch", "on_open_vswitch"])


@ATTACKERS
def test_forged_frames_never_reach_the_victims_and_are_counted_on_br_int(
        lab: Lab, tmp_path: Path, attacker: str) -> None:
    att, vic, far = (lab.vms[n] for n in (attacker, "vic", "far"))
    # the victims know each other (and att) from real traffic first
    assert _ping(vic, far.ip) and _ping(far, vic.ip) and _ping(vic, att.ip)
    before = {"vic": _neigh(vic), "far": _neigh(far)}
    assert before["vic"][far.ip] == far.mac and before["far"][vic.ip] == vic.mac
    flows_before = lab.flows(att.hypervisor)
    port = lab.ofport(att)

    seen, _ = _attack(lab, tmp_path, "protected", att)

    assert seen == {"vic": [], "far": []}
    after = {"vic": _neigh(vic), "far": _neigh(far)}
    assert after["vic"].get(far.ip) == far.mac and after["far"].get(vic.ip) == vic.mac
    # the gateway's address: never att's MAC. The entry may come and go meanwhile (learned
    # at DHCP time, aged out by the kernel, learned again at a lease renewal: all three
    # happened in CI runs), but whenever it is there it names the port the controller says
    # holds that address (the DHCP port, in this lab whose subnet has no gateway)
    holder = _holder_mac(lab, GATEWAY)
    for name in ("vic", "far"):
        for seen_mac in (before[name].get(GATEWAY), after[name].get(GATEWAY)):
            assert seen_mac in (None, holder), (name, seen_mac, holder)
            assert seen_mac != att.mac, name
    # the forged source MAC taught no switch that vic lives behind att's port
    assert _ping(far, vic.ip)
    flows = lab.flows(att.hypervisor)
    # two ARP forgeries, REPEAT times each, dropped by table 24's catch-all (Neutron's drop);
    # three IP forgeries by table 25's rule for IP from an address the port does not own
    t24 = [x for x in flows if "table=24" in x]
    t25 = [x for x in flows if "table=25" in x]
    t24_before = [x for x in flows_before if "table=24" in x]
    t25_before = [x for x in flows_before if "table=25" in x]
    assert _n_packets(t24, "priority=0") - _n_packets(t24_before, "priority=0") >= 2 * REPEAT
    ip_rule = f"priority=3,ip,in_port={port}"
    assert _n_packets(t25, ip_rule) - _n_packets(t25_before, ip_rule) >= 3 * REPEAT

    # and the trace names the table and the flow
    traced = _tn(lab.directory, "trace", att.name, "far", "--src-ip", vic.ip, "--json")
    assert traced.returncode == 1
    ends = json.loads(traced.stdout)["outcome"]["ends"]
    assert any(e["what"] == "dropped" and e["reason"].startswith("table 25 (MAC_SPOOF_TABLE")
               and f"flow {ip_rule} actions=drop" in e["reason"] for e in ends), ends


def test_a_vip_in_an_allowed_address_pair_moves_between_two_vms_by_gratuitous_arp(
        lab: Lab) -> None:
    att, vic, far = (lab.vms[n] for n in ("att", "vic", "far"))
    with lab.api() as api:
        for holder in (vic, far):
            api.update("port", holder.port_id, allowed_address_pairs=[{"ip_address": VIP}])
    for hv, holder in (("hv1", vic), ("hv2", far)):
        _wait(lambda hv=hv: any(f"arp_spa={VIP}" in x for x in lab.flows(hv)),
              f"{holder.name}'s address pair on {hv}'s br-int")
    try:
        for holder in (vic, far):
            _ns(holder.netns, "ip", "addr", "add", f"{VIP}/24", "dev", "eth0")
            _send(holder, [_garp(holder.mac, VIP)], repeat=2)
            _wait(lambda holder=holder: _ping(att, VIP) and _neigh(att).get(VIP) == holder.mac,
                  f"att reaching the VIP at {holder.name}", timeout=20)
            _ns(holder.netns, "ip", "addr", "del", f"{VIP}/24", "dev", "eth0")
            time.sleep(1.1)  # past the neighbour locktime, so the next announcement counts
    finally:
        with lab.api() as api:
            for holder in (vic, far):
                api.update("port", holder.port_id, allowed_address_pairs=[])


@ATTACKERS
def test_port_security_off_lets_the_same_forgery_through(lab: Lab, tmp_path: Path,
                                                         attacker: str) -> None:
    att, vic, far = (lab.vms[n] for n in (attacker, "vic", "far"))
    port = lab.ofport(att)
    with lab.api() as api:
        api.update("port", att.port_id, port_security_enabled=False)
    _wait(lambda: not any(f"in_port={port}" in x for x in lab.flows(att.hypervisor)),
          f"{att.name}'s port-security flows to go")
    # the switches may have learned vic's MAC on att's port from an earlier forgery: vic's own
    # traffic teaches them back
    _wait(lambda: _ping(vic, far.ip) and _ping(far, vic.ip), "vic and far to reach each other")
    seen, _ = _attack(lab, tmp_path, "open", att, unprotected=True)
    assert seen["vic"] and seen["far"]  # the same frames now arrive
    assert att.mac in (_neigh(vic).get(GATEWAY), _neigh(far).get(GATEWAY))
