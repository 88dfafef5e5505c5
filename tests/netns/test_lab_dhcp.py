"""DHCP in the namespace lab, with the real parts: the DHCP agent's dnsmasq in its namespace
behind a network:dhcp port on hv1, and busybox udhcpc in the VMs (topologies/dhcp.toml).

One lab serves every check. Expected values come from elsewhere than our output: the MTU
from the tunnel overhead (RFC 7348 and RFC 2784/2890 headers over the underlay's 1500), the
address from the controller's port, the mask from the topology's CIDR, what the server
answered from captures of the DHCP exchange (scapy's BOOTP/DHCP dissectors) and what the
VM's interface holds from the kernel (``ip -json``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.l2 import Ether

from support.lab_cli import run_lab, running_lab
from support.text import unwrapped
from support.tools import require_tool
from tunnelnet.client.http import Client
from tunnelnet.lab import dhcp_client
from tunnelnet.lab.state import StateFile
from tunnelnet.trace.pcap import read_frames

pytestmark = pytest.mark.netns

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "dhcp.toml"
PREFIX = f"tnH{os.getpid() % 10000}"
UNDERLAY_MTU = 1500
INNER_ETHERNET = 14
VXLAN_MTU = UNDERLAY_MTU - (20 + 8 + 8 + INNER_ETHERNET)  # IPv4, UDP, VXLAN (RFC 7348)
GRE_MTU = UNDERLAY_MTU - (20 + 4 + 4 + INNER_ETHERNET)  # IPv4, GRE with key (RFC 2890)
# IPv4, UDP, Geneve's base header with no options (RFC 8926)
GENEVE_MTU = UNDERLAY_MTU - (20 + 8 + 8 + INNER_ETHERNET)
UNKNOWN_MAC = "fa:16:3e:de:ad:01"


def _lab(lab_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tool("dnsmasq")
    require_tool("udhcpc")
    require_tool("tcpdump")
    directory = tmp_path_factory.mktemp("dhcplab")
    try:
        with running_lab(PREFIX, TOPOLOGY, directory):
            yield directory
    finally:  # dnsmasq runs from the lab's directory under /run, not from this one
        assert _processes_with_prefix(f"/run/tunnelnet-lab-dhcp/{PREFIX}/".encode()) == []


@pytest.fixture(scope="module")
def api(lab_dir: Path) -> Iterator[Client]:
    state = StateFile(lab_dir).load()
    with Client(state.server_url, state.admin_token, timeout=15.0) as client:
        yield client


def _state(lab_dir: Path) -> Any:
    return StateFile(lab_dir).load()


def _ip_json(netns: str, *args: str) -> Any:
    out = subprocess.run(["ip", "-n", netns, "-json", *args], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    return json.loads(out)


def _eth0(netns: str) -> tuple[str, int, int]:
    """(address, prefix length, MTU) of a VM's eth0, as the kernel has it."""
    link = _ip_json(netns, "addr", "show", "dev", "eth0")[0]
    inet = [a for a in link["addr_info"] if a["family"] == "inet"]
    assert len(inet) == 1, link
    return inet[0]["local"], inet[0]["prefixlen"], link["mtu"]


def _dhcp_port(api: Client, network_id: str) -> dict[str, Any]:
    ports = [p for p in api.list("port", network_id=network_id)
             if p["device_owner"] == "network:dhcp"]
    assert len(ports) == 1, ports
    return ports[0]


def _ask(netns: str, lease_file: Path, tries: int = 2) -> dhcp_client.Lease | None:
    """One udhcpc run in ``netns`` with short timeouts: the lease, or None for no answer."""
    proc = dhcp_client.start(netns, "eth0", lease_file, tries=tries, timeout=1)
    try:
        return dhcp_client.finish(proc, lease_file, netns, wait=30)
    except dhcp_client.DhcpClientError:
        return None


@contextmanager
def _capture(netns: str, interface: str, pcap: Path) -> Iterator[list[Ether]]:
    """DHCP frames seen on ``netns``/``interface`` while the block runs."""
    frames: list[Ether] = []
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "tcpdump", "-U", "--immediate-mode",
                             "-n", "-i",
                             interface, "-w", str(pcap), "udp port 67 or udp port 68"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # tcpdump is listening once it has opened the interface
        yield frames
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    frames.extend(Ether(f) for f in read_frames(pcap))


def _dhcp_types(frames: list[Ether], mac: str) -> list[int]:
    """The DHCP message types (1 discover, 2 offer, ...) of frames about client ``mac``."""
    chaddr = bytes.fromhex(mac.replace(":", ""))
    out: list[int] = []
    for frame in frames:
        if frame.haslayer(BOOTP) and bytes(frame[BOOTP].chaddr)[:6] == chaddr:
            options: dict[str, Any] = dict(o for o in frame[DHCP].options
                                           if isinstance(o, tuple))
            out.append(int(options["message-type"]))
    return out


def _set_mac(netns: str, mac: str) -> None:
    for args in (["link", "set", "eth0", "down"], ["link", "set", "eth0", "address", mac],
                 ["link", "set", "eth0", "up"]):
        subprocess.run(["ip", "-n", netns, *args], check=True, timeout=10)


def _wait(what: str, ready: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"not so after {timeout:.0f}s: {what}"
        time.sleep(0.2)


def test_each_vm_has_its_ports_address_and_its_networks_mtu_from_the_lease(
        lab_dir: Path, api: Client) -> None:
    state = _state(lab_dir)
    ports = {p["id"]: p for p in api.list("port")}
    expected_mtu = {"red-net": VXLAN_MTU, "blue-net": GRE_MTU, "gold-net": GENEVE_MTU}
    for name in ("r1", "r2", "b1", "au1"):
        vm = state.vms[name]
        address = ports[vm.port_id]["fixed_ips"][0]["ip_address"]
        # the kernel's view of the VM: what the lease configured
        assert _eth0(vm.netns) == (address, 24, expected_mtu[vm.network]), name
        lease = dhcp_client.parse_lease((lab_dir / "leases" / f"{name}.lease").read_text())
        assert (lease.ip, lease.prefixlen, lease.mtu) == (address, 24,
                                                           expected_mtu[vm.network])
        assert lease.router is None  # the lab's subnets have no gateway


def test_the_dhcp_port_is_a_port_of_its_network_on_hv1_and_answers_across_the_tunnel(
        lab_dir: Path, api: Client) -> None:
    state = _state(lab_dir)
    for vm_name in ("r1", "b1", "au1"):  # all on hv2, their networks' DHCP ports on hv1
        vm = state.vms[vm_name]
        port = _dhcp_port(api, state.networks[vm.network]["id"])
        assert port["binding:host_id"] == "hv1" != vm.hypervisor
        assert port["status"] == "ACTIVE"
        lease = dhcp_client.parse_lease((lab_dir / "leases" / f"{vm_name}.lease").read_text())
        assert lease.server == port["fixed_ips"][0]["ip_address"]
    # green has DHCP off: no DHCP port, and its VM has the topology's address
    green = state.networks["green-net"]["id"]
    assert [p for p in api.list("port", network_id=green)
            if p["device_owner"] == "network:dhcp"] == []
    assert _eth0(state.vms["g1"].netns) == ("10.3.0.5", 24, VXLAN_MTU)


def test_trace_follows_a_renewal_across_the_tunnel_to_the_dhcp_port_and_the_wire_agrees(
        lab_dir: Path) -> None:
    trace = subprocess.run([sys.executable, "-m", "tunnelnet", "trace", "r1", "dhcp-red-net",
                            "--proto", "udp", "--dport", "67", "--live",
                            "--dir", str(lab_dir)],
                           capture_output=True, text=True, timeout=120, check=False,
                           env={**os.environ, "TUNNELNET_LAB_PREFIX": PREFIX})
    # exit 0: delivered, and counters, the underlay capture and the DHCP namespace agree
    assert trace.returncode == 0, trace.stdout + trace.stderr
    # the whole trace in the message: a CI run once missed this line with exit 0
    said = unwrapped(trace.stdout)
    assert "delivered to dhcp-red-net on hv1" in said, trace.stdout
    assert "VXLAN" in said and "AGREES with the wire" in said, trace.stdout


def test_gateway_dns_servers_and_host_routes_follow_a_subnet_update(
        lab_dir: Path, api: Client, tmp_path: Path) -> None:
    state = _state(lab_dir)
    subnet_id = state.networks["red-net"]["subnet_id"]
    api.update("subnet", subnet_id, allocation_pools=[{"start": "10.2.0.1",
                                                       "end": "10.2.0.200"}])
    api.update("subnet", subnet_id, gateway_ip="10.2.0.254", dns_nameservers=["192.0.2.53"],
               host_routes=[{"destination": "172.16.0.0/16", "nexthop": "10.2.0.253"}])
    vm = state.vms["r1"]

    def answered() -> bool:
        lease = _ask(vm.netns, tmp_path / "r1.lease")
        return lease is not None and lease.router == "10.2.0.254"
    _wait("r1's lease names the new gateway", answered)
    lease = dhcp_client.parse_lease((tmp_path / "r1.lease").read_text())
    assert lease.dns == ("192.0.2.53",)
    # RFC 3442: the default route travels inside option 121 with the host routes
    assert set(lease.routes) == {("172.16.0.0/16", "10.2.0.253"), ("0.0.0.0/0", "10.2.0.254")}
    assert lease.mtu == VXLAN_MTU


def test_a_deleted_ports_mac_and_an_unknown_mac_get_no_answer_and_the_address_is_freed(
        lab_dir: Path, api: Client, tmp_path: Path) -> None:
    added = _lab(lab_dir, "add-vm", "r3", "--network", "red-net", "--hypervisor", "hv2")
    assert added.returncode == 0, added.stdout + added.stderr
    # x1 asks with other MACs: its port's anti-spoofing is lifted, as Neutron allows
    added = _lab(lab_dir, "add-vm", "x1", "--network", "red-net", "--hypervisor", "hv2")
    assert added.returncode == 0, added.stdout + added.stderr
    state = _state(lab_dir)
    r3, x1 = state.vms["r3"], state.vms["x1"]
    api.update("port", x1.port_id, port_security_enabled=False)
    assert _eth0(r3.netns)[0] == r3.ip  # r3 got its lease through add-vm
    dhcp = _dhcp_port(api, state.networks["red-net"]["id"])
    namespace = f"{PREFIX}-qdhcp-{dhcp['network_id']}"
    inner = f"ns-{dhcp['id']}"[:14]

    pid_file = Path("/run/tunnelnet-lab-dhcp") / PREFIX / dhcp["network_id"] / "pid"
    dnsmasq = pid_file.read_text().strip()  # written by dnsmasq itself
    api.delete("port", r3.port_id)
    time.sleep(2.0)  # the DHCP agent hears of it and reloads dnsmasq
    pcap = tmp_path / "dhcp.pcap"
    with _capture(namespace, inner, pcap) as frames:
        _set_mac(x1.netns, r3.mac)
        assert _ask(x1.netns, tmp_path / "deleted.lease") is None
        _set_mac(x1.netns, UNKNOWN_MAC)
        assert _ask(x1.netns, tmp_path / "unknown.lease") is None
        _set_mac(x1.netns, x1.mac)
        mine = _ask(x1.netns, tmp_path / "x1.lease")
    for mac in (r3.mac, UNKNOWN_MAC):
        types = _dhcp_types(frames, mac)
        assert types and set(types) == {1}, (mac, types)  # discovers arrived, nothing went back
    assert mine is not None and mine.ip == x1.ip  # the same path answers a known MAC
    seen = sorted({bytes(f[BOOTP].chaddr)[:6].hex(":") for f in frames if f.haslayer(BOOTP)})
    assert 2 in _dhcp_types(frames, x1.mac), (x1.mac, seen)

    # the deleted port's address, now a new port's: dnsmasq released it, so the new MAC
    # gets it (x1 plays the new port's VM)
    heir = api.create("port", network_id=dhcp["network_id"], project_id="red",
                      fixed_ips=[{"subnet_id": state.networks["red-net"]["subnet_id"],
                                  "ip_address": r3.ip}])
    _set_mac(x1.netns, heir["mac_address"])

    def leased_to_heir() -> bool:
        lease = _ask(x1.netns, tmp_path / "heir.lease")
        return lease is not None and lease.ip == r3.ip
    _wait("the new port's MAC gets the freed address", leased_to_heir, timeout=20)
    _set_mac(x1.netns, x1.mac)
    # every change was a reload (SIGHUP), never a restart: the first dnsmasq still serves
    assert pid_file.read_text().strip() == dnsmasq
    assert Path(f"/proc/{dnsmasq}/comm").read_text().strip() == "dnsmasq"


def test_enable_dhcp_false_removes_the_dhcp_port_and_nothing_answers(
        lab_dir: Path, api: Client, tmp_path: Path) -> None:
    state = _state(lab_dir)
    net_id, subnet_id = state.networks["blue-net"]["id"], state.networks["blue-net"]["subnet_id"]
    b1 = state.vms["b1"]
    api.update("subnet", subnet_id, enable_dhcp=False)

    def no_dhcp_port() -> bool:
        return not [p for p in api.list("port", network_id=net_id)
                    if p["device_owner"] == "network:dhcp"]
    _wait("blue's DHCP port is deleted", no_dhcp_port)
    with _capture(b1.netns, "eth0", tmp_path / "b1.pcap") as frames:
        assert _ask(b1.netns, tmp_path / "off.lease") is None
    types = _dhcp_types(frames, b1.mac)
    assert types and set(types) == {1}, types
    assert _ask(state.vms["g1"].netns, tmp_path / "g1.lease") is None  # topology's dhcp=false

    api.update("subnet", subnet_id, enable_dhcp=True)
    _wait("blue is served again", lambda: _ask(b1.netns, tmp_path / "on.lease") is not None)
    assert dhcp_client.parse_lease((tmp_path / "on.lease").read_text()).mtu == GRE_MTU


def test_a_dhcp_agent_killed_and_started_again_serves_with_one_dnsmasq_per_network(
        lab_dir: Path, api: Client, tmp_path: Path) -> None:
    state = _state(lab_dir)
    agent = next(p for p in state.processes if p.name == "dhcp-agent-hv1")
    red = state.networks["red-net"]["id"]
    hosts_file = f"--dhcp-hostsfile=/run/tunnelnet-lab-dhcp/{PREFIX}/{red}/host".encode()
    (old,) = _processes_with(hosts_file)
    os.kill(agent.pid, 9)  # no chance to stop its dnsmasqs or remove its namespaces
    _wait("the DHCP agent is gone", lambda: not Path(f"/proc/{agent.pid}").exists()
          or "Z" in Path(f"/proc/{agent.pid}/stat").read_text().split(")")[-1].split()[0])
    started = _lab(lab_dir, "start", "dhcp-agent-hv1")
    assert started.returncode == 0, started.stdout + started.stderr
    # the orphan is stopped and one new dnsmasq serves (never two, nor the orphan alone)
    _wait("a new dnsmasq serves red", lambda: len(now := _processes_with(hosts_file)) == 1
          and now[0] != old)
    r1 = state.vms["r1"]

    def served() -> bool:
        lease = _ask(r1.netns, tmp_path / "again.lease")
        return lease is not None and lease.ip == r1.ip
    _wait("r1 is served after the restart", served)
    assert _processes_with(hosts_file) != [old]
    assert len(_processes_with(hosts_file)) == 1


def _processes_with_prefix(prefix: bytes) -> list[int]:
    """Pids of the dnsmasqs serving files under ``prefix`` (this lab's), if any are left."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"dnsmasq") and any(prefix in a for a in argv):
            found.append(int(proc.name))
    return found


def _processes_with(arg: bytes) -> list[int]:
    """Pids of the dnsmasqs whose command line has ``arg``, as the kernel lists them."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"dnsmasq") and arg in argv:
            found.append(int(proc.name))
    return found
