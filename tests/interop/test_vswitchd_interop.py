"""tunnelnet's vswitchd on one hypervisor, an independent implementation on the other: Linux's
own vxlan device in a bridge, or Open vSwitch's userspace datapath (netdev, br-phy holding the
uplink) over VXLAN, GRE and Geneve (`type=geneve`: the kernel here has no geneve module, so
Open vSwitch is the one Geneve peer). The VMs must ping and carry TCP both ways, which only works
if each side accepts exactly what the other puts on the wire; for Geneve, tshark also judges the
bytes each side sends against RFC 8926. ``*-fastpath``: ours with `--fastpath kernel`, whose
GRE and VXLAN the kernel programs write and read themselves (issue #22)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.netns import Lab, lab, run, two_hypervisors
from support.ovs import OvsSwitch
from support.tools import require_tool
from support.vswitchd import Vswitchd
from tunnelnet.datapath import messages as m

pytestmark = [pytest.mark.netns, pytest.mark.interop]

KEY = 1001
VM_MTU = 1400


@dataclass
class Pair:
    ns: dict[str, str]
    ours: Vswitchd
    peer: str
    ovs: OvsSwitch | None = None


def _ours_on_hv1(ns: dict[str, str], kind: str, fastpath: str = "off") -> Vswitchd:
    sw = Vswitchd(ns["hv1"], fastpath=fastpath)
    sw.start()
    sw.vsctl("add-br", "br-int")
    sw.vsctl("add-port", "br-int", "tap1")
    sw.vsctl("add-port", "br-int", "tun0", f"type={kind}", "options:remote_ip=192.0.2.2",
             f"options:key={KEY}")
    return sw


def _kernel_on_hv2(made: Lab, ns: dict[str, str]) -> None:
    hv2 = ns["hv2"]
    run(["ip", "link", "add", "vx0", "type", "vxlan", "id", str(KEY), "remote", "192.0.2.1",
         "local", "192.0.2.2", "dstport", "4789", "dev", "eth0"], netns=hv2)
    made.bridge(hv2, "br-vm", ["vx0", "tap2"])
    run(["ip", "link", "set", "vx0", "up"], netns=hv2)


def _wire_finishes_checksums(ns: dict[str, str]) -> None:
    """The underlay bridge's ports compute the checksums a sender left to its "NIC" (CHECKSUM_
    PARTIAL: our UDP GSO batches; the kernel refuses UDP GSO without a checksum) as a real NIC
    does on the wire. Across veths they would otherwise reach Open vSwitch's packet socket
    with the pseudo-header sum only, which it checks (ovs-vswitchd.conf.db(5), csum: "checksums
    present on incoming packets will be validated") and drops: measured here, TCP to Open
    vSwitch over VXLAN or Geneve fell from about 300 Mbit/s to 1."""
    for i in (1, 2):
        run(["ethtool", "-K", f"ul{i}", "tx", "off"], netns=ns["ul"])


def _ovs_on_hv2(ovs: OvsSwitch, ns: dict[str, str], kind: str) -> None:
    hv2 = ns["hv2"]
    ovs.add_bridge("br-phy")
    run(["ip", "addr", "flush", "dev", "eth0"], netns=hv2)
    ovs.add_port("br-phy", "eth0")
    run(["ip", "addr", "add", "192.0.2.2/24", "dev", "br-phy"], netns=hv2)
    run(["ip", "link", "set", "br-phy", "up"], netns=hv2)
    ovs.add_bridge("br-int")
    ovs.add_port("br-int", "tap2")
    ovs.add_port("br-int", "tun0", type=kind, options={"remote_ip": "192.0.2.1",
                                                       "key": str(KEY)})
    # OVS's native tunnelling needs its route and neighbour towards our hypervisor first
    deadline = time.monotonic() + 15
    while run(["ping", "-c1", "-W1", "192.0.2.1"], netns=hv2, check=False).returncode != 0:
        assert time.monotonic() < deadline, "br-phy never reached hypervisor 1"


@pytest.fixture(params=["kernel-vxlan", "ovs-vxlan", "ovs-gre", "ovs-geneve",
                        "ovs-gre-fastpath", "ovs-vxlan-fastpath", "kernel-vxlan-fastpath"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    peer: str = request.param
    kind = peer.split("-")[1]
    with lab() as made:
        ns = two_hypervisors(made, vm_mtu=VM_MTU)
        ours = _ours_on_hv1(ns, kind, "kernel" if peer.endswith("-fastpath") else "off")
        try:
            if peer.startswith("kernel-vxlan"):
                _kernel_on_hv2(made, ns)
                yield Pair(ns, ours, peer)
            else:
                require_tool("ovs-vswitchd")
                _wire_finishes_checksums(ns)
                with OvsSwitch(netns=ns["hv2"]) as ovs:
                    _ovs_on_hv2(ovs, ns, kind)
                    yield Pair(ns, ours, peer, ovs)
        finally:
            ours.close()


def _ping(ns: str, dst: str, count: int = 3) -> subprocess.CompletedProcess[str]:
    return run(["ping", "-c", str(count), "-i", "0.2", "-W", "2", dst], netns=ns, check=False,
               timeout=60)


def _iperf(client_ns: str, server_ns: str, server_ip: str, *, reverse: bool = False) -> float:
    require_tool("iperf3")
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        args = ["iperf3", "-c", server_ip, "-t", "2", "-J", *(["-R"] if reverse else [])]
        proc = run(args, netns=client_ns, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout[-500:] + proc.stderr
        return float(json.loads(proc.stdout)["end"]["sum_received"]["bits_per_second"])
    finally:
        server.kill()
        server.wait(5)


def test_vms_ping_and_carry_tcp_both_ways_with_an_independent_peer(pair: Pair) -> None:
    ns = pair.ns
    deadline = time.monotonic() + 20  # OVS may still be settling its tunnel route
    while _ping(ns["vm1"], "10.0.0.2", count=1).returncode != 0:
        assert time.monotonic() < deadline, f"vm1 never reached vm2 through {pair.peer}"
    assert _ping(ns["vm2"], "10.0.0.1").returncode == 0
    forward = _iperf(ns["vm1"], ns["vm2"], "10.0.0.2")
    reverse = _iperf(ns["vm1"], ns["vm2"], "10.0.0.2", reverse=True)
    rtt = re.search(r"= [\d.]+/([\d.]+)/", _ping(ns["vm1"], "10.0.0.2", count=10).stdout)
    print(f"\ntunnelnet<->{pair.peer}: TCP {forward / 1e6:.0f} Mbit/s to the peer, "
          f"{reverse / 1e6:.0f} Mbit/s from it, ping rtt avg {rtt.group(1) if rtt else '?'} ms")
    # far below what a busy machine gives (hundreds of Mbit/s), far above what a side that
    # drops every batch leaves to retransmissions alone (1 Mbit/s: see _wire_finishes_checksums)
    assert forward > 10e6 and reverse > 10e6
    drops = pair.ours.call(m.DumpDrops())
    # everything the peer sent was understood: nothing dropped as bad or from an unknown peer
    assert drops["daemon"] == {}
    assert drops["bridges"]["br-int"].get("bad_packet", 0) == 0
    if pair.peer.endswith("-fastpath"):  # and the kernel carried it, both ways
        stats = pair.ours.call(m.DatapathStats())
        if pair.peer.split("-")[1] == "gre":
            assert stats["kernel_gre_sent"] > 100 and stats["kernel_gre_received"] > 100, stats
        else:  # VXLAN out written by the programs, and what came back replayed too
            assert stats["kernel_vxlan_sent"] > 100 and stats["kernel_tunnel_hits"] > 100, stats
            if pair.peer.startswith("ovs"):  # no UDP checksum (csum=false): ours to unwrap
                assert stats["kernel_vxlan_received"] > 100, stats
            # Linux's device sends UDP checksums by default: to the stack, which checks
            # them, and the collect_md device (tunnel_ingress); none unwrapped early
            else:
                assert stats["kernel_vxlan_received"] == 0, stats


@pytest.mark.parametrize("pair", ["ovs-geneve"], indirect=True)
def test_geneve_on_the_wire_is_rfc_8926_from_both_sides(pair: Pair, tmp_path: Path) -> None:
    """What each side sends, read by tshark's own Geneve dissector: UDP to 6081, version 0, no
    OAM, protocol 0x6558 (Ethernet), the port's key as VNI; ours with its UDP source port from
    the inner flow's hash in the dynamic range (RFC 8926 section 3.3, as VXLAN's RFC 7348)."""
    require_tool("tcpdump")
    tshark = require_tool("tshark")
    ns = pair.ns
    deadline = time.monotonic() + 20  # OVS may still be settling its tunnel route
    while _ping(ns["vm1"], "10.0.0.2", count=1).returncode != 0:
        assert time.monotonic() < deadline, "vm1 never reached vm2 through Open vSwitch"
    pcap = tmp_path / "underlay.pcap"
    capture = subprocess.Popen(["ip", "netns", "exec", ns["ul"], "timeout", "30", "tcpdump",
                                "--immediate-mode", "-i", "br0", "-U", "-w", str(pcap),
                                "udp"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert capture.stderr is not None
        capture.stderr.readline()  # "listening on br0 ..." once the capture is armed
        assert _ping(ns["vm1"], "10.0.0.2").returncode == 0
        assert _ping(ns["vm2"], "10.0.0.1").returncode == 0
        time.sleep(0.3)
    finally:
        capture.send_signal(signal.SIGINT)
        capture.wait(10)
    fields = subprocess.run(
        [tshark, "-r", str(pcap), "-Y", "geneve", "-T", "fields", "-E", "separator=|",
         "-e", "ip.src", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "geneve.version",
         "-e", "geneve.flags.oam", "-e", "geneve.proto_type", "-e", "geneve.vni",
         "-e", "geneve.options"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    senders: dict[str, int] = {}
    for line in fields.splitlines():
        outer, sport, dport, version, oam, protocol, vni, options = line.split("|")
        src = outer.split(",")[0]  # the outer header's (an inner IPv4 header follows)
        assert (dport, version, int(protocol, 0), int(vni, 0), options) == (
            "6081", "0", 0x6558, KEY, ""), line
        assert oam in ("0", "False", "false"), line
        if src == "192.0.2.1":  # ours
            assert 49152 <= int(sport) <= 65535, line
        senders[src] = senders.get(src, 0) + 1
    # 3 echo requests and 3 replies each way, at least, from each side
    assert senders.get("192.0.2.1", 0) >= 6 and senders.get("192.0.2.2", 0) >= 6, senders
    assert pair.ours.call(m.DumpDrops())["daemon"] == {}


@pytest.mark.parametrize("pair", ["ovs-geneve"], indirect=True)
@pytest.mark.parametrize(("option_type", "reason"), [
    (0x01, None),  # RFC 8926 section 3.5.1: an unknown option that is not critical is skipped
    (0x81, "geneve_critical_option"),  # the top bit of the type: critical, so dropped
])
def test_open_vswitchs_geneve_options_are_skipped_unless_critical(
        pair: Pair, option_type: int, reason: str | None) -> None:
    """Open vSwitch puts a Geneve option (its tun_metadata0, class 0x0102) on everything vm2
    sends; our port delivers it if the option is not critical, else drops and counts it."""
    ovs = pair.ovs
    assert ovs is not None
    ovs.ofctl("add-tlv-map", ovs.mgmt("br-int"),
              f"{{class=0x0102,type={option_type:#x},len=4}}->tun_metadata0")
    ovs.add_flows("br-int", ["priority=10,in_port=tap2,"
                             "actions=set_field:0x1234->tun_metadata0,output:tun0"])
    ping = _ping(pair.ns["vm1"], "10.0.0.2")
    drops = pair.ours.call(m.DumpDrops())["daemon"]
    if reason is None:
        assert ping.returncode == 0, ping.stdout
        assert drops == {}
    else:
        assert ping.returncode != 0, ping.stdout
        # at least vm2's ARP reply to vm1's request came back with the critical option
        assert set(drops) == {reason} and drops[reason] >= 1, drops
