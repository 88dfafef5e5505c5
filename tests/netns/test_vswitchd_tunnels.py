"""Two tunnelnet hypervisors carrying two tenant networks with the same VM addresses over
VXLAN, GRE or Geneve: real namespaces, real `tunnelnet vswitchd` processes, a static br-int/br-tun
pipeline loaded by hand with ofctl (the agent's job later), tcpdump/tshark on the underlay as
the judge of what went on the wire."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.netns import Lab, lab, run, two_hypervisors
from support.tools import require_tool
from support.vswitchd import Vswitchd
from tunnelnet.datapath import messages as m

pytestmark = pytest.mark.netns

KEYS = {"A": 100, "B": 200}  # tunnel key of each tenant network
VLANS = {"A": 1, "B": 2}  # local VLAN of each network on br-int
HV_IPS = {"192.0.2.1", "192.0.2.2"}
VM_MTU = 1400

# br-tun by hand, as Neutron's tables 0/2/4 do it in spirit: patch-int is ofport 1, the tunnel 2
BR_TUN_FLOWS = f"""\
table=0,priority=1,in_port=1,actions=resubmit(,2)
table=0,priority=1,in_port=2,actions=resubmit(,4)
table=0,priority=0,actions=drop
table=2,priority=1,dl_vlan={VLANS['A']},actions=strip_vlan,set_tunnel:{KEYS['A']},output:2
table=2,priority=1,dl_vlan={VLANS['B']},actions=strip_vlan,set_tunnel:{KEYS['B']},output:2
table=2,priority=0,actions=drop
table=4,priority=1,tun_id={KEYS['A']},actions=mod_vlan_vid:{VLANS['A']},output:1
table=4,priority=1,tun_id={KEYS['B']},actions=mod_vlan_vid:{VLANS['B']},output:1
table=4,priority=0,actions=drop
"""


@dataclass
class Site:
    ns: dict[str, str]  # role -> namespace: ul, hv1, hv2, vmA1, vmA2, vmB1, vmB2
    switches: dict[str, Vswitchd]  # hv1, hv2
    kind: str  # vxlan, gre or geneve


def _vm_pair(made: Lab, ns: dict[str, str]) -> None:
    """Network B's VMs, with the same addresses as network A's (vm1/vm2 of two_hypervisors)."""
    for i in (1, 2):
        ns[f"vmB{i}"] = made.netns()
        made.veth(ns[f"hv{i}"], f"tapb{i}", ns[f"vmB{i}"], "eth0", mtu=VM_MTU)
        made.addr(ns[f"vmB{i}"], "eth0", f"10.0.0.{i}/24")
        made.offloads_off(ns[f"vmB{i}"], "eth0")
        made.offloads_off(ns[f"hv{i}"], f"tapb{i}")


def _configure(sw: Vswitchd, i: int, kind: str) -> None:
    peer = f"192.0.2.{3 - i}"
    sw.vsctl("add-br", "br-int")
    sw.vsctl("add-port", "br-int", f"tap{i}", f"tag={VLANS['A']}")
    sw.vsctl("add-port", "br-int", f"tapb{i}", f"tag={VLANS['B']}")
    sw.vsctl("add-port", "br-int", "patch-tun", "type=patch", "options:peer=patch-int")
    sw.vsctl("add-br", "br-tun", "fail_mode=secure")
    sw.vsctl("add-port", "br-tun", "patch-int", "type=patch", "options:peer=patch-tun",
             "ofport=1")
    sw.vsctl("add-port", "br-tun", f"{kind}-peer", f"type={kind}", "ofport=2",
             f"options:remote_ip={peer}", "options:key=flow")
    sw.ofctl("add-flows", "br-tun", "-", input=BR_TUN_FLOWS)


@contextmanager
def _site(kind: str) -> Iterator[Site]:
    with lab() as made:
        ns = two_hypervisors(made, vm_mtu=VM_MTU)
        ns["vmA1"], ns["vmA2"] = ns.pop("vm1"), ns.pop("vm2")
        _vm_pair(made, ns)
        switches: dict[str, Vswitchd] = {}
        try:
            for i in (1, 2):
                switches[f"hv{i}"] = Vswitchd(ns[f"hv{i}"])
                switches[f"hv{i}"].start()
                _configure(switches[f"hv{i}"], i, kind)
            yield Site(ns, switches, kind)
        finally:
            for sw in switches.values():
                sw.close()


KINDS = ["vxlan", "gre", "geneve"]
# tshark's field for each kind's key
KEY_FIELD = {"vxlan": "vxlan.vni", "gre": "gre.key", "geneve": "geneve.vni"}
# Bytes around the inner frame in the outer IPv4 packet: IPv4 20 + UDP 8 + VXLAN 8 (RFC 7348),
# IPv4 20 + GRE 4 + key 4 (RFC 2890), IPv4 20 + UDP 8 + Geneve 8 without options (RFC 8926)
OVERHEAD = {"vxlan": 36, "gre": 28, "geneve": 36}


@pytest.fixture(params=KINDS)
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    """A fresh site, for tests that change it (links down, MTUs, daemons stopped)."""
    with _site(request.param) as made:
        yield made


@pytest.fixture(scope="module", params=KINDS)
def shared_site(request: pytest.FixtureRequest) -> Iterator[Site]:
    """One site per tunnel kind for the tests that only send traffic and read counters
    (building one takes seconds; the netns suite must stay short)."""
    with _site(request.param) as made:
        yield made


def _ping(ns: str, dst: str, *args: str, count: int = 3) -> subprocess.CompletedProcess[str]:
    return run(["ping", "-c", str(count), "-i", "0.2", "-W", "2", *args, dst], netns=ns,
               check=False, timeout=30)


def _neighbour_mac(ns: str, ip: str) -> str:
    out = run(["ip", "-j", "neigh", "show", ip], netns=ns).stdout
    entries = json.loads(out or "[]")
    return str(entries[0].get("lladdr", "")) if entries else ""


def _mac(ns: str, ifname: str) -> str:
    return str(json.loads(run(["ip", "-j", "link", "show", ifname], netns=ns).stdout)[0]
               ["address"])


def test_each_vm_reaches_only_its_own_networks_peer_with_equal_addresses(site: Site) -> None:
    ns = site.ns
    for net in ("A", "B"):
        ping = _ping(ns[f"vm{net}1"], "10.0.0.2")
        assert ping.returncode == 0, f"network {net}: {ping.stdout}{ping.stderr}"
        # the 10.0.0.2 that answered is this network's VM, not the other tenant's
        assert _neighbour_mac(ns[f"vm{net}1"], "10.0.0.2") == _mac(ns[f"vm{net}2"], "eth0")
    # attacker's side: with B's 10.0.0.2 gone, B's VM must not reach A's 10.0.0.2
    run(["ip", "link", "set", "eth0", "down"], netns=ns["vmB2"])
    run(["ip", "neigh", "flush", "all"], netns=ns["vmB1"])
    assert _ping(ns["vmB1"], "10.0.0.2", count=3).returncode != 0
    assert _ping(ns["vmA1"], "10.0.0.2", count=2).returncode == 0
    drops = site.switches["hv2"].call(m.DumpDrops())
    assert drops["daemon"].get("unknown_tunnel_peer", 0) == 0


def _iperf(client_ns: str, server_ns: str, server_ip: str, *, reverse: bool = False) -> float:
    require_tool("iperf3")
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        args = ["iperf3", "-c", server_ip, "-t", "2", "-J", *(["-R"] if reverse else [])]
        proc = run(args, netns=client_ns, timeout=30, check=False)
        assert proc.returncode == 0, proc.stdout[-500:] + proc.stderr
        result = json.loads(proc.stdout)
        return float(result["end"]["sum_received"]["bits_per_second"])
    finally:
        server.kill()
        server.wait(5)


def test_tcp_runs_both_ways_through_the_tunnel(shared_site: Site) -> None:
    site = shared_site
    ns = site.ns
    assert _ping(ns["vmA1"], "10.0.0.2").returncode == 0
    forward = _iperf(ns["vmA1"], ns["vmA2"], "10.0.0.2")
    backward = _iperf(ns["vmA1"], ns["vmA2"], "10.0.0.2", reverse=True)
    rtt = re.search(r"= [\d.]+/([\d.]+)/", _ping(ns["vmA1"], "10.0.0.2", count=10).stdout)
    print(f"\ntunnelnet<->tunnelnet {site.kind}: TCP {forward / 1e6:.0f} Mbit/s forward, "
          f"{backward / 1e6:.0f} Mbit/s reverse, ping rtt avg {rtt.group(1) if rtt else '?'} ms")
    assert forward > 0 and backward > 0


def test_every_packet_of_quiet_traffic_is_counted(site: Site) -> None:
    """Pings far apart are each read alone and follow their flow's plan on the short way
    (deferred counting, the frame sent at once): the OpenFlow counters must still count
    every one.
    Dedicated flows for the echo requests and replies of network A on both hypervisors'
    br-tun; ping's own statistics are the reference."""
    ns = site.ns
    # (table, match as dump-flows prints it) of the requests and replies on each
    flows = {"hv1": ((2, "priority=2,icmp,dl_vlan=1,nw_dst=10.0.0.2"),
                     (4, "priority=2,icmp,tun_id=0x64,nw_src=10.0.0.2")),
             "hv2": ((2, "priority=2,icmp,dl_vlan=1,nw_dst=10.0.0.1"),
                     (4, "priority=2,icmp,tun_id=0x64,nw_src=10.0.0.1"))}
    actions = {2: f"strip_vlan,set_tunnel:{KEYS['A']},output:2",
               4: f"mod_vlan_vid:{VLANS['A']},output:1"}
    for hv, pair in flows.items():
        text = "".join(f"table={t},{match},actions={actions[t]}\n" for t, match in pair)
        site.switches[hv].ofctl("add-flows", "br-tun", "-", input=text)
    count = 40
    result = run(["ping", "-c", str(count), "-i", "0.02", "-W", "2", "10.0.0.2"],
                 netns=ns["vmA1"], check=False, timeout=30)
    received = re.search(r"(\d+) received", result.stdout)
    assert received and int(received.group(1)) == count, result.stdout
    for hv, pair in flows.items():
        dump = site.switches[hv].ofctl("dump-flows", "br-tun").splitlines()
        for table, match in pair:
            line = next(x for x in dump if f"table={table}," in x and f" {match} " in x)
            assert f"n_packets={count}," in line, (hv, line)
    # and they were not walked: each hypervisor forwarded every request and reply; past the
    # first of each direction (and an ARP exchange), all of them followed plans
    stats = json.loads(site.switches["hv1"].ofctl("dp-stats", "--json"))
    assert stats["packets_followed"] >= 2 * count - 6, stats
    assert stats["packets_walked"] >= 2 and stats["plans"] >= 2, stats


def test_underlay_carries_only_encapsulated_packets_with_each_networks_key(shared_site: Site,
                                                                          tmp_path: Path
                                                                          ) -> None:
    site = shared_site
    require_tool("tcpdump")
    tshark = require_tool("tshark")
    ns = site.ns
    pcap = tmp_path / "ul.pcap"
    # IPv4 and ARP: anything of a VM leaking unencapsulated would be one of them. IGMP is the
    # underlay bridge's own multicast chatter (source 0.0.0.0), not traffic of the switches.
    # --immediate-mode: without it, packets still in the TPACKET_V3 ring block are lost at stop.
    capture = subprocess.Popen(["ip", "netns", "exec", ns["ul"], "timeout", "30", "tcpdump",
                                "--immediate-mode", "-i", "br0", "-U", "-w", str(pcap), "-c",
                                "200", "arp or (ip and not igmp)"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert capture.stderr is not None
        capture.stderr.readline()  # "listening on br0 ..." once the capture is armed
        for net in ("A", "B"):
            assert _ping(ns[f"vm{net}1"], "10.0.0.2", count=3).returncode == 0
        time.sleep(0.3)
    finally:
        capture.send_signal(signal.SIGINT)
        capture.wait(10)
    kind = site.kind
    fields = subprocess.run(
        [tshark, "-r", str(pcap), "-T", "fields", "-E", "separator=|", "-e", "eth.type",
         "-e", "ip.src", "-e", "ip.dst", "-e", KEY_FIELD[kind], "-e", "arp.dst.proto_ipv4",
         "-e", "udp.srcport", "-e", "eth.src", "-e", "eth.dst", "-e", "udp.dstport",
         "-e", "geneve.version", "-e", "geneve.proto_type", "-e", "geneve.options"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    keys_seen: set[int] = set()
    packets = 0
    sports: dict[tuple[str, ...], set[int]] = {}
    for line in fields.splitlines():
        (eth_type, src, dst, key, arp_dst, sport, eth_src, eth_dst, dport, version, protocol,
         options) = line.split("|")
        if eth_type.split(",")[0] == "0x0806":  # the underlay's own ARP, for hypervisors only
            assert arp_dst.split(",")[0] in HV_IPS, line
            continue
        packets += 1
        outer_src, outer_dst = src.split(",")[0], dst.split(",")[0]
        assert {outer_src, outer_dst} <= HV_IPS, f"not between hypervisors: {line}"
        assert key, f"not {kind}-encapsulated: {line}"
        keys_seen.add(int(key.split(",")[0], 0))
        if kind == "geneve":  # RFC 8926: UDP 6081, version 0, Ethernet inside, no options
            assert (dport, version, int(protocol, 0), options) == ("6081", "0", 0x6558, ""), line
        if kind != "gre":  # inner flow = inner MACs and addresses (ICMP has no ports)
            inner = (key, *eth_src.split(",")[1:], *eth_dst.split(",")[1:],
                     *src.split(",")[1:], *dst.split(",")[1:])
            sports.setdefault(inner, set()).add(int(sport))
    assert packets >= 12  # 3 echo requests + 3 replies per network
    assert keys_seen == {KEYS["A"], KEYS["B"]}
    # RFC 7348 section 5, RFC 8926 section 3.3: the UDP source port comes from a hash of the
    # inner headers, in the dynamic range, and one inner flow keeps one port (so ECMP keeps it
    # in order)
    for inner, ports in sports.items():
        assert len(ports) == 1, f"inner flow {inner} used source ports {ports}"
        assert 49152 <= next(iter(ports)) <= 65535


def test_frame_too_big_for_the_tunnel_is_answered_with_frag_needed_and_pmtu_is_learned(
        site: Site) -> None:
    # guests that ignore the network's MTU: their NICs (and taps) at 1500 over a tunnel that
    # leaves 1500 - overhead - 14 bytes of IP (Neutron's network MTU: VXLAN 1450, GRE 1458)
    ns = site.ns
    for netns, ifname in ((ns["vmA1"], "eth0"), (ns["hv1"], "tap1"), (ns["vmA2"], "eth0"),
                          (ns["hv2"], "tap2")):
        run(["ip", "link", "set", ifname, "mtu", "1500"], netns=netns)
    assert _ping(ns["vmA1"], "10.0.0.2", count=1).returncode == 0  # small ones still pass
    mtu = 1500 - OVERHEAD[site.kind] - 14
    big = _ping(ns["vmA1"], "10.0.0.2", "-s", "1472", "-M", "do", count=2)
    # Linux ping's own words for the ICMP error it received (iputils pr_icmph)
    assert f"Frag needed and DF set (mtu = {mtu})" in big.stdout + big.stderr, big.stdout
    drops = site.switches["hv1"].call(m.DumpDrops("br-tun"))
    assert drops["bridges"]["br-tun"].get("mtu_frag_needed", 0) >= 1
    assert drops["oversize"][f"{site.kind}-peer"]["mtu_frag_needed"] >= 1
    (port,) = site.switches["hv1"].call(m.DumpPorts("br-tun", "2"))
    assert port["mtu"] == mtu and port["tx_dropped"] >= 1
    assert "fragmentation needed" in site.switches["hv1"].log()
    # the kernel learned the path MTU towards the destination, so an ordinary ping of the
    # same size is now fragmented by the sender and answered
    route = run(["ip", "route", "get", "10.0.0.2"], netns=ns["vmA1"]).stdout
    assert f"mtu {mtu}" in route, route
    assert _ping(ns["vmA1"], "10.0.0.2", "-s", "1472", count=1).returncode == 0
    # and the switch's trace says so before anyone loses a packet
    trace = site.switches["hv1"].ofctl("trace", "br-tun", "in_port=1,dl_vlan=1")
    assert f"underlay MTU 1500: frames over {1500 - OVERHEAD[site.kind]} bytes" in trace
    assert f"IP MTU {mtu})" in trace and "fragmentation needed" in trace


def test_packets_from_an_unknown_tunnel_peer_are_dropped_and_counted(shared_site: Site) -> None:
    site = shared_site
    ns = site.ns
    kind = site.kind
    run(["ip", "addr", "add", "192.0.2.99/24", "dev", "br0"], netns=ns["ul"])
    # scapy builds the packet (independent of our codec); a socket in the underlay sends it
    sender = f"""
import socket
from scapy.all import ICMP, IP, VXLAN, Ether, GRE
from scapy.contrib.geneve import GENEVE
inner = Ether(src="02:00:00:00:00:99", dst="ff:ff:ff:ff:ff:ff") / IP(dst="10.0.0.2") / ICMP()
if {kind!r} == "vxlan":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    data, dst = bytes(VXLAN(vni={KEYS['A']}) / inner), ("192.0.2.1", 4789)
elif {kind!r} == "geneve":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    data, dst = bytes(GENEVE(vni={KEYS['A']}, proto=0x6558) / inner), ("192.0.2.1", 6081)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
    data, dst = bytes(GRE(key_present=1, key={KEYS['A']}, proto=0x6558) / inner), ("192.0.2.1", 0)
for _ in range(5):
    s.sendto(data, dst)
"""
    # the judge of "nothing reached a VM": a capture on the VM of that network's key
    watch = subprocess.Popen(["ip", "netns", "exec", ns["vmA1"], "timeout", "4", "tcpdump",
                              "--immediate-mode", "-i", "eth0", "-c", "1",
                              "ether src 02:00:00:00:00:99"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert watch.stderr is not None
    watch.stderr.readline()  # "listening on eth0 ..."
    run([sys.executable, "-c", sender], netns=ns["ul"], timeout=60)
    deadline = time.monotonic() + 5
    drops: dict[str, int] = {}
    while time.monotonic() < deadline:
        drops = site.switches["hv1"].call(m.DumpDrops())["daemon"]
        if drops.get("unknown_tunnel_peer", 0) >= 5:
            break
        time.sleep(0.1)
    assert drops.get("unknown_tunnel_peer", 0) == 5
    captured, errors = watch.communicate(timeout=20)
    assert captured.strip() == "", captured  # nothing of it reached the VM
    assert "0 packets captured" in errors


# From the underlay, with the peer hypervisor's address as its source: one GRE packet per
# argv variant, built by scapy, carrying a broadcast frame from MAC 02:00:00:00:00:77 in key A.
_GRE_SENDER = """
import socket, sys
from scapy.all import GRE, ICMP, IP, Ether, Raw
inner = Ether(src="02:00:00:00:00:77", dst="ff:ff:ff:ff:ff:ff") / IP(dst="10.0.0.1") / ICMP()
outer = IP(src="192.0.2.2", dst="192.0.2.1", ttl=64)
variants = {
    "checksummed": GRE(chksum_present=1, key_present=1, key=int(sys.argv[2]), proto=0x6558),
    "bad_checksum": GRE(chksum_present=1, key_present=1, key=int(sys.argv[2]), proto=0x6558,
                        chksum=0x1234),
    "not_teb": GRE(key_present=1, key=int(sys.argv[2]), proto=0x0800),
}
if sys.argv[1] == "truncated":
    packet = bytes(outer / GRE(key_present=1, key=int(sys.argv[2]), proto=0x6558)
                   / Raw(bytes(inner)[:10]))
else:
    packet = bytes(outer / variants[sys.argv[1]] / inner)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(packet, ("192.0.2.1", 0))
"""


@pytest.mark.parametrize("shared_site", ["gre"], indirect=True)
@pytest.mark.parametrize(("variant", "delivered"), [
    ("checksummed", True),  # RFC 2890: a checksum and a key, both valid
    ("bad_checksum", False),
    ("not_teb", False),  # an IPv4 payload, not an Ethernet frame
    ("truncated", False),  # no room for an inner Ethernet header
])
def test_gre_packets_from_the_peer_are_taken_only_when_well_formed(
        shared_site: Site, variant: str, delivered: bool) -> None:
    """Whatever form a GRE packet from the peer's address takes, it reaches network A's VM
    only if RFC 2784/2890 say it is a good Ethernet-over-GRE packet; else it is counted as
    a bad tunnel packet."""
    site = shared_site
    ns = site.ns
    run(["ip", "addr", "replace", "192.0.2.98/24", "dev", "br0"], netns=ns["ul"])
    before = site.switches["hv1"].call(m.DumpDrops())["daemon"].get("bad_tunnel_packet", 0)
    # the capture's time starts once the packet is sent (scapy's start-up alone can take
    # seconds on a loaded machine): a delivered frame has 15 s to show, a refused one 2 s
    watch = subprocess.Popen(["ip", "netns", "exec", ns["vmA1"], "tcpdump",
                              "--immediate-mode", "-e", "-i", "eth0", "-c", "1",
                              "ether src 02:00:00:00:00:77"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert watch.stderr is not None
    watch.stderr.readline()  # "listening on eth0 ..."
    run([sys.executable, "-c", _GRE_SENDER, variant, str(KEYS["A"])], netns=ns["ul"],
        timeout=60)
    try:
        captured, _ = watch.communicate(timeout=15 if delivered else 2)
    except subprocess.TimeoutExpired:
        watch.terminate()
        captured, _ = watch.communicate(timeout=10)
    after = site.switches["hv1"].call(m.DumpDrops())["daemon"].get("bad_tunnel_packet", 0)
    if delivered:
        assert "02:00:00:00:00:77" in captured
        assert after == before
    else:
        assert captured.strip() == "", captured
        assert after == before + 1


# From the underlay, with the peer hypervisor's address as its source: one Geneve packet per
# argv variant, built by scapy, carrying a broadcast frame from MAC 02:00:00:00:00:66 in key A.
_GENEVE_SENDER = """
import socket, sys
from scapy.all import ICMP, IP, UDP, Ether
from scapy.contrib.geneve import GENEVE, GeneveOptions
inner = Ether(src="02:00:00:00:00:66", dst="ff:ff:ff:ff:ff:ff") / IP(dst="10.0.0.1") / ICMP()
vni = int(sys.argv[2])
variants = {
    "non_critical_option": GENEVE(vni=vni, proto=0x6558,
                                  options=[GeneveOptions(classid=0x0102, type=0x01,
                                                         data=b"abcd")]),
    "critical_option": GENEVE(vni=vni, proto=0x6558, critical=1,
                              options=[GeneveOptions(classid=0x0102, type=0x81,
                                                     data=b"abcd")]),
    "oam": GENEVE(vni=vni, proto=0x6558, oam=1),
    "not_ethernet": GENEVE(vni=vni, proto=0x0800),
}
payload = inner[IP] if sys.argv[1] == "not_ethernet" else inner
packet = IP(src="192.0.2.2", dst="192.0.2.1", ttl=64) / UDP(sport=50000, dport=6081) \\
    / variants[sys.argv[1]] / payload
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(bytes(packet), ("192.0.2.1", 0))
"""


@pytest.mark.parametrize("shared_site", ["geneve"], indirect=True)
@pytest.mark.parametrize(("variant", "reason"), [
    ("non_critical_option", None),  # RFC 8926 section 3.5.1: skipped, the frame delivered
    ("critical_option", "geneve_critical_option"),  # unknown to us, so it MUST be dropped
    ("oam", "geneve_oam"),  # control traffic, no VM's frame
    ("not_ethernet", "bad_tunnel_packet"),
])
def test_geneve_packets_from_the_peer_are_delivered_or_dropped_by_their_options(
        shared_site: Site, variant: str, reason: str | None) -> None:
    """A Geneve packet from the peer's address reaches network A's VM unless RFC 8926 says
    an endpoint that knows no option must drop it; then `dump-drops` counts it by reason."""
    site = shared_site
    ns = site.ns
    run(["ip", "addr", "replace", "192.0.2.97/24", "dev", "br0"], netns=ns["ul"])
    before = site.switches["hv1"].call(m.DumpDrops())["daemon"]
    watch = subprocess.Popen(["ip", "netns", "exec", ns["vmA1"], "tcpdump",
                              "--immediate-mode", "-e", "-i", "eth0", "-c", "1",
                              "ether src 02:00:00:00:00:66"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert watch.stderr is not None
    watch.stderr.readline()  # "listening on eth0 ..."
    run([sys.executable, "-c", _GENEVE_SENDER, variant, str(KEYS["A"])], netns=ns["ul"],
        timeout=60)
    try:  # timed from the send, as in the GRE test above
        captured, _ = watch.communicate(timeout=15 if reason is None else 2)
    except subprocess.TimeoutExpired:
        watch.terminate()
        captured, _ = watch.communicate(timeout=10)
    after = site.switches["hv1"].call(m.DumpDrops())["daemon"]
    if reason is None:
        assert "02:00:00:00:00:66" in captured
        assert after == before
    else:
        assert captured.strip() == "", captured
        assert after == {**before, reason: before.get(reason, 0) + 1}
    dump = site.switches["hv1"].ofctl("dump-drops")
    for name, count in after.items():  # what the CLI shows, too
        assert re.search(rf"{name}\D+{count}\b", dump), dump


def test_killed_clients_do_not_disturb_forwarding(shared_site: Site) -> None:
    site = shared_site
    ns = site.ns
    sw = site.switches["hv1"]
    pinger = subprocess.Popen(["ip", "netns", "exec", ns["vmA1"], "ping", "-c", "40", "-i",
                               "0.05", "-W", "2", "10.0.0.2"], stdout=subprocess.PIPE,
                              text=True)
    try:
        # a client killed mid-request, and a vsctl killed while it runs
        half = subprocess.Popen([sys.executable, "-c", (
            "import socket,sys,time;s=socket.socket(socket.AF_UNIX);"
            f"s.connect({str(sw.rundir / 'vswitchd.sock')!r});"
            "s.sendall(b'{\"v\":1,\"id\":1,\"op\":\"show\"');time.sleep(30)")])
        vsctl = subprocess.Popen([sys.executable, "-m", "tunnelnet", "vsctl", "--rundir",
                                  str(sw.rundir), "show"], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        for proc in (half, vsctl):
            proc.kill()
            proc.wait(5)
        out, _ = pinger.communicate(timeout=30)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait(5)
    assert " 0% packet loss" in out, out
    assert sw.call(m.ListBridges()) == ["br-int", "br-tun"]


def test_sigterm_exits_cleanly_and_leaves_no_tap_device(site: Site) -> None:
    ns = site.ns
    sw = site.switches["hv1"]
    sw.vsctl("add-port", "br-int", "int-mgmt", "type=internal")
    assert run(["ip", "link", "show", "int-mgmt"], netns=ns["hv1"], check=False).returncode == 0
    assert sw.stop(signal.SIGTERM) == 0
    assert run(["ip", "link", "show", "int-mgmt"], netns=ns["hv1"], check=False).returncode != 0
    assert not (sw.rundir / "vswitchd.sock").exists()


def test_peer_switch_restart_is_survived_and_traffic_resumes(site: Site) -> None:
    ns = site.ns
    hv2 = site.switches["hv2"]
    assert _ping(ns["vmA1"], "10.0.0.2", count=1).returncode == 0
    assert hv2.stop(signal.SIGTERM) == 0
    # the peer answers our tunnel packets with ICMP errors now; we must shrug them off
    assert _ping(ns["vmA1"], "10.0.0.2", count=3).returncode != 0
    hv2.start()
    _configure(hv2, 2, site.kind)
    deadline = time.monotonic() + 15
    while _ping(ns["vmA1"], "10.0.0.2", count=1).returncode != 0:
        assert time.monotonic() < deadline, "traffic did not resume after the peer restarted"
    assert site.switches["hv1"].call(m.Ping())["pid"] > 0
    assert "Traceback" not in site.switches["hv1"].log()
