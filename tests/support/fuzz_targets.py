"""What the fuzzers feed, and what counts as a clear refusal: one registry of targets shared by
the CI-sized tests (tests/adversarial/test_fuzz_parsers.py, hypothesis) and the bench
(bench/fuzz.py, atheris, coverage-guided).

A target takes bytes and drives one of tunnelnet's readers of untrusted input with them. It
either returns (accepted, or refused and counted as a drop where that is the contract), or
raises one of its ``clear`` exceptions with a non-empty message: the project's own error class
for that reader, which the CLI, the control socket or the datapath turns into one line. Any
other exception - IndexError, KeyError, ValueError, RecursionError, an empty message - is a
finding: ``check`` raises it as it came, so atheris and hypothesis both report it with its
traceback. ``seeds`` are well-formed inputs (built with scapy, an independent encoder, for the
packets) that a mutating fuzzer starts from, so it reaches past the first length check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import tomllib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from support.boards import switchboard, wire_int_tun
from support.vswitchd import RecordingPort
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.errors import DatapathError, ProtocolError
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PatchPort, Port, PortKind
from tunnelnet.datapath.service import Service
from tunnelnet.datapath.switchboard import Switchboard
from tunnelnet.datapath.tunnel_port import TunnelPort
from tunnelnet.datapath.tunnel_rx import Arrival, Ports, TunnelReceiver
from tunnelnet.errors import TunnelnetError
from tunnelnet.lab.topology import TopologyError
from tunnelnet.lab.topology import parse as parse_topology
from tunnelnet.packet import (
    arp,
    bfd,
    ethernet,
    flowkey,
    geneve,
    gre,
    icmp,
    ipv4,
    ipv6,
    tcp,
    tunnel,
    udp,
    vlan,
    vxlan,
)
from tunnelnet.packet.decode import decode as decode_frame
from tunnelnet.packet.decode import encode as encode_frame
from tunnelnet.packet.errors import PacketError
from tunnelnet.switch import Bridge
from tunnelnet.switch.errors import SwitchError
from tunnelnet.switch.flow_parser import FlowCommand, parse_flow

ROOT = Path(__file__).resolve().parents[2]
REGRESSIONS = ROOT / "tests" / "adversarial" / "fuzz_regressions"


@dataclass(frozen=True)
class Target:
    name: str
    what: str  # one line for the bench's table
    run: Callable[[bytes], None]
    clear: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]] = field(default=lambda: [])
    # tokens the input format is made of (libFuzzer's -dict): a mutation that inserts a whole
    # keyword or magic number gets past a check byte flips rarely pass
    words: tuple[bytes, ...] = ()
    # hypothesis only: inputs built from the format's parts (atheris gets there by mutation)
    structured: Callable[[], st.SearchStrategy[bytes]] | None = None

    def check(self, data: bytes) -> None:
        """Runs one input; a clear refusal is swallowed, anything else propagates."""
        try:
            self.run(data)
        except self.clear as exc:
            if not str(exc).strip():
                raise AssertionError(f"{type(exc).__name__} with an empty message") from exc

    def regressions(self) -> list[Path]:
        """The inputs that once crashed this target, kept (see fuzz_regressions/README)."""
        folder = REGRESSIONS / self.name
        return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


# --- packets ---------------------------------------------------------------------------------

_HEADERS: tuple[Callable[..., object], ...] = (
    ethernet.parse, vlan.parse, arp.parse, ipv4.parse, ipv6.parse, icmp.parse, icmp.parse_v6,
    tcp.parse, udp.parse, vxlan.parse, gre.parse, geneve.parse, bfd.parse)


def _headers(data: bytes) -> None:
    """Each header's own parser at offset 0 (and 1: an odd start the fast paths never see).
    A refusal of one must not stop the others from being tried."""
    for parse in _HEADERS:
        for offset in (0, 1):
            with contextlib.suppress(PacketError):
                parse(data, offset)
    bfd.recognize(data)  # None for what it does not take; it raises nothing


def _decode(data: bytes) -> None:
    """The whole-frame decoder and its mirror: what decode accepts, encode builds again."""
    encode_frame(decode_frame(data))


def _flow_key(data: bytes) -> None:
    for extract in (flowkey.extract_flow_key, flowkey.extract_flow_key_qinq):
        for verify in (False, True):
            with contextlib.suppress(PacketError):
                extract(data, 1, 5, tun_src=1, tun_dst=2, verify_checksums=verify)


def _decap(data: bytes) -> None:
    for unwrap in (tunnel.decap, tunnel.vxlan_decap_payload, tunnel.gre_decap_payload,
                   tunnel.gre_decap_packet, geneve.geneve_decap_payload):
        with contextlib.suppress(PacketError):
            unwrap(data)


def _packet_seeds() -> list[bytes]:
    return list(_scapy_frames())


@functools.cache
def _scapy_frames() -> tuple[bytes, ...]:
    from scapy.contrib.bfd import BFD
    from scapy.contrib.geneve import GENEVE
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import ARP, GRE, Dot1Q, Ether
    from scapy.layers.vxlan import VXLAN

    vm = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    inner = vm / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP() / b"ping"
    under = Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / IP(
        src="192.0.2.1", dst="192.0.2.2")
    frames = [
        inner,
        vm / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags="S"),
        vm / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", frag=0) / UDP() / (b"x" * 40),
        vm / Dot1Q(vlan=5) / IP(dst="10.0.0.2", options=b"\x01\x01\x01\x00") / UDP(),
        vm / Dot1Q(vlan=5) / Dot1Q(vlan=6) / IP() / ICMP(),
        Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.0.1", pdst="10.0.0.2"),
        vm / IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(),
        vm / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5, dport=6),
        under / UDP(sport=49152, dport=4789) / VXLAN(vni=5) / inner,
        under / UDP(sport=49152, dport=6081) / GENEVE(vni=7, proto=0x6558) / inner,
        under / GRE(key_present=1, key=9, proto=0x6558) / inner,
        under / GRE(chksum_present=1, seqnum_present=1, proto=0x0800) / inner[IP],
        under / UDP(sport=49152, dport=3784) / BFD(my_discriminator=1),
    ]
    return tuple(bytes(f) for f in frames)


# --- the datapath's receive path, in-process -------------------------------------------------

_PEER = 0x7F000002
_KINDS = (PortKind.VXLAN, PortKind.GENEVE, PortKind.GRE)


def _fuzz_ports(kind: PortKind, name: str, options: Mapping[str, str]) -> Port:
    """System and internal ports record (no device, no root); patch ports are real. A tunnel
    port's options are checked as the daemon checks them, then it is refused: its shared
    sockets would bind the host's tunnel ports (the netns test drives those in a daemon)."""
    if kind is PortKind.PATCH:
        return PatchPort(name, options)
    if kind in (PortKind.SYSTEM, PortKind.INTERNAL):
        return RecordingPort(name, options)
    TunnelPort(kind, name, options).close()
    raise _NotInProcess(f"{name}: tunnel ports are not made by the in-process harness")


class _NotInProcess(DatapathError):
    """The harness's own refusal (see _fuzz_ports)."""


@contextlib.contextmanager
def _board() -> Iterator[tuple[Switchboard, EventLoop]]:
    """br-int (NORMAL, a VM on VLAN 5) patched to br-tun, whose flows are the agent's shape:
    learn from the tunnel, tag by tun_id, flood or unicast to the trunk."""
    with switchboard(_fuzz_ports) as (board, loop):
        wire_int_tun(board, vm_tag=5)
        board.bridges["br-tun"].bridge.add_flows([
            "table=0,priority=1,in_port=1,actions=resubmit(,2)",
            "table=0,priority=1,in_port=2,actions=resubmit(,4)",
            "table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,22)",
            "table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,20)",
            "table=4,priority=1,tun_id=0x5,actions=mod_vlan_vid:5,resubmit(,10)",
            "table=4,priority=1,actions=mod_vlan_vid:5,resubmit(,10)",
            "table=10,priority=1,actions=learn(table=20,hard_timeout=300,priority=1,"
            "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
            "load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],"
            "output:OXM_OF_IN_PORT[]),output:1",
            "table=20,priority=0,actions=resubmit(,22)",
            "table=22,priority=1,dl_vlan=5,actions=strip_vlan,set_tunnel:0x5,output:2",
        ])
        yield board, loop


def _receive(data: bytes) -> None:
    """The first byte picks the way in: a VM's frame on br-int, or a datagram on a tunnel
    socket (VXLAN, Geneve: the UDP payload; GRE: the IPv4 packet) whose inner frame then
    enters br-tun. Nothing may escape: a bad packet is counted and dropped. Each frame goes
    in twice, so the second takes the plan the first one made (the fast path)."""
    if not data:
        return
    way, body = data[0] % 4, data[1:]
    with _board() as (board, loop):
        if way == 0:
            frames = [("vm1", body)]
        else:
            port = TunnelPort(_KINDS[way - 1], "t0", {"remote_ip": "127.0.0.2", "key": "flow"})
            ports: Ports = {port.demux_key: port}
            receiver = TunnelReceiver(loop, ports, lambda *_: None)
            batch: list[Arrival] = []
            if port.kind is PortKind.GRE:
                arrival = receiver._gre_packet(body, "127.0.0.2")
                batch = [] if arrival is None else [arrival]
            else:
                parse = (receiver._vxlan_datagram if port.kind is PortKind.VXLAN
                         else receiver._geneve_datagram)
                parse(body, port.dst_port, _PEER, ports, batch)
                parse(memoryview(body), port.dst_port, _PEER, ports, batch)
            port.close()
            frames = [("uplink", arrival[3]) for arrival in batch]
        for name, frame in frames:
            board.inject(name, frame)
            board.inject(name, frame)


# --- flow text -------------------------------------------------------------------------------

_FLOW_SEEDS = [
    "priority=5,in_port=1,actions=output:2",
    "table=0,priority=1,in_port=1,dl_vlan=5,actions=mod_vlan_vid:77,output:2",
    "table=4,priority=1,tun_id=0x5/0xffff,actions=mod_vlan_vid:5,resubmit(,10)",
    "table=10,priority=1,actions=learn(table=20,hard_timeout=300,priority=1,"
    "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
    "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1",
    "cookie=0x1,table=25,priority=2,in_port=3,dl_src=fa:16:3e:00:00:01,actions=goto_table:60",
    "priority=10,arp,arp_spa=10.0.0.1,arp_op=1,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],"
    "set_field:fa:16:3e:00:00:01->eth_src,load:0x2->NXM_OF_ARP_OP[],IN_PORT",
    "priority=3,ip,nw_src=10.0.0.0/24,nw_dst=10.0.1.1,nw_tos=4,actions=drop",
    "priority=3,tcp,tp_dst=80,tp_src=1024/0xfc00,actions=NORMAL",
    "priority=3,udp6,ipv6_src=fd00::/64,udp_dst=53,actions=output:1",
    "priority=2,icmp6,icmp_type=136,nd_target=fd00::1,actions=output:NXM_NX_REG0[0..15]",
    "idle_timeout=10,hard_timeout=20,priority=1,reg0=0x5,vlan_tci=0x1005/0x1fff,"
    "actions=push_vlan:0x8100,set_field:4101->vlan_vid,output:1",
    "table=60,priority=3,dl_vlan=4,actions=strip_vlan,set_tunnel:0x64,output:2,output:3",
]


def _flow_text(data: bytes) -> None:
    """ovs-ofctl's flow syntax as add-flow, mod-flows, del-flows, dump-flows and trace read
    it; what a bridge accepts, its dump-flows line gives back and parses again (ovs-ofctl's
    own promise that a dump can be re-added)."""
    text = data.decode("utf-8", "replace")
    for command in FlowCommand:
        with contextlib.suppress(SwitchError):
            parse_flow(text, command)
    bridge = Bridge("br0", fail_mode="secure")
    for call in (bridge.del_flows, bridge.dump_flows, bridge.trace):
        with contextlib.suppress(SwitchError):
            call(text)
    bridge.add_flow(text)
    for line in bridge.dump_flows(stats=False):
        again = Bridge("br1", fail_mode="secure")
        again.add_flow(line)
        if again.dump_flows(stats=False) != [line]:
            raise AssertionError(f"dump-flows {line!r} re-added gives "
                                 f"{again.dump_flows(stats=False)!r}")


# --- control-socket messages -----------------------------------------------------------------

def _control_seeds() -> list[bytes]:
    requests: list[m.Request] = [
        m.AddBridge("br9"), m.AddPort("br0", "p9", tag=5), m.AddPort("br0", "x", "patch",
                                                                   options={"peer": "y"}),
        m.AddPort("br0", "v9", "vxlan", options={"remote_ip": "192.0.2.2", "key": "flow"}),
        m.SetPort("br0", "p1", tag=7), m.DelPort("br0", "p2"), m.SetBridge(
            "br0", {"mac-table-size": "10"}),
        m.AddFlows("br0", ["priority=5,in_port=1,actions=output:2"]),
        m.ModFlows("br0", "in_port=1,actions=drop"), m.DelFlows("br0", "in_port=1"),
        m.DumpFlows("br0"), m.TraceFlow("br0", "in_port=1,dl_dst=02:00:00:00:00:02"),
        m.FdbShow("br0"), m.Show(), m.ListInterfaces(), m.DumpDrops(), m.DumpPorts("br0"),
        m.SetInterface("p1", {"enable": "true"}), m.DelBridge("br0"), m.Ping(),
    ]
    return [m.encode_request(r, i) for i, r in enumerate(requests)]


def _control(data: bytes) -> None:
    """Each line is read as the control socket reads it and answered by the daemon's own
    Service on a fresh in-process switch (br0 with ports p1 and p2): a ProtocolError for a
    bad message, a TunnelnetError for a refused request, never another exception (the socket
    would survive it, answering "InternalError": a bug, not a clear error)."""
    with _board() as (board, _):
        board.add_bridge("br0")
        board.add_port("br0", "p1", PortKind.SYSTEM)
        board.add_port("br0", "p2", PortKind.SYSTEM)
        service = Service(board)
        for line in data.split(b"\n")[:16]:
            if not line.strip():
                continue
            try:
                _, request = m.decode_request(line)
            except ProtocolError as exc:
                if not str(exc):
                    raise AssertionError("ProtocolError with an empty message") from exc
                continue
            with contextlib.suppress(_NotInProcess):
                try:
                    answer = service(request)
                except TunnelnetError as exc:
                    if not str(exc).strip():
                        raise AssertionError(f"{type(exc).__name__} with no message") from exc
                    continue
            # the answer must go back on the socket as one JSON line
            m.decode_response(m.encode_response(m.Reply(1, answer)))


# --- topology files --------------------------------------------------------------------------

def _topology_seeds() -> list[bytes]:
    paths = sorted((ROOT / "examples").glob("*.toml"))
    paths += sorted((ROOT / "tests" / "adversarial" / "topologies").glob("*.toml"))
    return [p.read_bytes() for p in paths]


def _topology(data: bytes) -> None:
    """What `lab up FILE` reads: bytes -> TOML -> the topology. lab's load() answers a TOML
    syntax error as a TopologyError; the same refusal is accepted here."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return
    parse_topology(doc)


# values close to what each control argument wants, so requests get past the type checks
_NEAR = st.sampled_from([
    "br0", "br-int", "br-tun", "p1", "p2", "vm1", "patch-tun", "", "system", "internal",
    "patch", "vxlan", "gre", "geneve", "secure", "standalone", "actions=drop",
    "priority=5,in_port=1 actions=output:2", "table=300 actions=drop", "in_port=1",
    "actions=learn(table=20,NXM_OF_ETH_SRC[])", "actions=resubmit(,0)", "x" * 300,
    "dl_vlan=4096 actions=drop", "in_port=1,dl_dst=02:00:00:00:00:02", "../x", "a b"])
_OPTIONS = st.dictionaries(
    st.sampled_from(["remote_ip", "local_ip", "key", "peer", "dst_port", "enable",
                     "min_rx", "min_tx", "mac-table-size", "learn-flow-limit",
                     "mac-aging-time", "?"]),
    st.sampled_from(["192.0.2.2", "flow", "0", "-1", "br0", "true", "false", "::1",
                     "999999999999", "", "patch-int", "1e3", "0x10"]), max_size=3)
def _nest(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    _nest, max_leaves=6)


def _control_requests() -> st.SearchStrategy[bytes]:
    """Lines of requests of every operation with near-right arguments (the daemon test's
    generator, tests/adversarial/test_fuzz_control_socket.py, run here in-process)."""
    dict_fields = ("options", "external_ids", "bfd", "other_config")

    @st.composite
    def line(draw: st.DrawFn) -> bytes:
        cls = draw(st.sampled_from(sorted(m.REQUESTS.values(), key=lambda c: c.OP)))
        args: dict[str, object] = {}
        hints = typing.get_type_hints(cls)
        for fld in dataclasses.fields(cls):
            if draw(st.integers(0, 9)) == 0:
                continue  # left out
            if draw(st.integers(0, 9)) == 0:  # of the wrong type
                args[fld.name] = draw(_NEAR | st.integers(-1, 70000) | st.booleans()
                                      | st.none() | _JSON)
                continue
            # of the type it wants, so most requests reach the Service
            text = str(hints[fld.name])
            args[fld.name] = draw(_OPTIONS if fld.name in dict_fields or "dict" in text
                                  else st.lists(_NEAR, max_size=3) if "list" in text
                                  else st.booleans() if "bool" in text
                                  else st.integers(-1, 70000) | st.none() if "int" in text
                                  else _NEAR)
        return json.dumps({"v": 1, "id": draw(st.integers(0, 2**31)), "op": cls.OP,
                           "args": args}).encode()

    return st.lists(line(), min_size=1, max_size=6).map(b"\n".join)


def _flow_words() -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(_FLOW_WORDS), max_size=20).map(b"".join)


_PACKET_WORDS = (
    b"\x08\x00", b"\x08\x06", b"\x86\xdd", b"\x81\x00", b"\x88\xa8", b"\x65\x58",
    b"\x12\xb5", b"\x17\xc1", b"\x0e\xc8", b"\x45", b"\x46", b"\x4f", b"\x11", b"\x06",
    b"\x2f", b"\x3a", b"\x2c", b"\x00\x00\x65\x58", b"\x20\x00\x65\x58",
    b"\xb0\x00\x65\x58", b"\x08\x00\x00\x00", b"\xff\xff\xff\xff\xff\xff",
    b"\x20\x00", b"\x3f\xff", b"\x00\x01", b"\x00\x02", b"\xff\xff")
_FLOW_WORDS = tuple(w.encode() for w in (
    "priority=", "table=", "cookie=", "in_port=", "dl_vlan=", "dl_dst=", "dl_src=", "tun_id=",
    "arp", "tcp", "udp", "icmp", "ip", "ipv6", "tcp6", "icmp6", "tp_dst=", "nw_src=",
    "vlan_tci=", "reg0=", "actions=", "output:", "resubmit(", "learn(", "load:", "move:",
    "set_field:", "->", "NXM_OF_ETH_SRC[", "NXM_NX_REG0[]", "NXM_NX_TUN_ID[0..15]", "[0..11]",
    "]", "(", ")", ",", "/", "0x", "/0xffff", "-1", "65535", "4096", "ff:ff:ff:ff:ff:ff",
    "10.0.0.1/24", "fd00::1/64", "mod_vlan_vid:", "strip_vlan", "push_vlan:", "pop_vlan",
    "NORMAL", "drop", "IN_PORT", "CONTROLLER:", "idle_timeout=", "hard_timeout=",
    "fin_idle_timeout=", "goto_table:", "set_tunnel:", "dec_ttl", "note:", "nd_target=",
    "icmp_type=", "tcp_flags=", "+syn", "-ack", "ct_state=", "conjunction(", "apply_actions(",
    "delete_learned", "send_flow_rem", "out_port=", "vlan_vid", "eth_dst", "=", ":", " "))
_CONTROL_WORDS = tuple(w.encode() for w in (
    *(f'"{op}"' for op in m.REQUESTS), *(f'"{f.name}":' for cls in m.REQUESTS.values()
                                         for f in dataclasses.fields(cls)),
    '"v":1', '"id":', '"op":', '"args":{', '"system"', '"internal"', '"patch"', '"vxlan"',
    '"gre"', '"geneve"', '"secure"', '"standalone"', '"peer"', '"remote_ip"', '"key"', '"flow"',
    '"dst_port"', '"enable"', '"true"', '"mac-table-size"', '"learn-flow-limit"', "null",
    "true", "false", "-1", "4096", "65280", "1e309", '"br0"', '"p1"', '"p2"', "[", "]", "{",
    "}", ",", "\n"))
_TOPOLOGY_WORDS = tuple(w.encode() for w in (
    "[underlay]", "[control]", "[[hypervisor]]", "[[tenant]]", "[[network]]", "[[vm]]",
    "cidr = ", "mtu = ", "store = ", '"etcd"', "etcd_members = ", "replicas = ", "name = ",
    "ip = ", "switch = ", '"ovs"', "dhcp = ", "tenant = ", "type = ", "segment = ",
    "physical_network = ", "network = ", "hypervisor = ", '"vxlan"', '"gre"', '"geneve"',
    '"vlan"', '"flat"', '"10.0.0.0/24"', '"192.0.2.0/24"', '"192.0.2.11"', "true", "false",
    "-1", "4095", "16777216", '"hv1"', '"red"', '"red-net"', "\n"))


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("packet-headers", "each header's parser (Ethernet ... BFD) on any bytes",
           _headers, (PacketError,), _packet_seeds, _PACKET_WORDS),
    Target("packet-decode", "whole-frame decode (tunnels followed) and encode back",
           _decode, (PacketError,), _packet_seeds, _PACKET_WORDS),
    Target("packet-flowkey", "flow-key extraction, one and two VLAN tags, checksums",
           _flow_key, (PacketError,), _packet_seeds, _PACKET_WORDS),
    Target("packet-decap", "VXLAN/GRE/Geneve decapsulation", _decap, (PacketError,),
           _packet_seeds, _PACKET_WORDS),
    Target("datapath-receive", "tunnel receive + br-int/br-tun tables, in-process", _receive,
           (), lambda: [bytes([way]) + s for s in _packet_seeds() for way in range(4)],
           _PACKET_WORDS),
    Target("flow-text", "ovs-ofctl flow text: parse, add, dump, re-add", _flow_text,
           (SwitchError,), lambda: [s.encode() for s in _FLOW_SEEDS], _FLOW_WORDS,
           _flow_words),
    Target("control-message", "control-socket lines answered by the daemon's Service",
           _control, (ProtocolError, TunnelnetError), _control_seeds, _CONTROL_WORDS,
           _control_requests),
    Target("topology-file", "lab topology TOML", _topology, (TopologyError,), _topology_seeds,
           _TOPOLOGY_WORDS),
)}



def inputs(target: Target) -> st.SearchStrategy[bytes]:
    """Hypothesis's inputs for a target: random bytes, or one of its seeds with a few edits
    (a byte set, a run cut out, bytes put in, a cut short) - the mutations that take a
    well-formed input just past each check."""
    seeds = target.seeds()
    if not seeds:
        return st.binary(max_size=256)
    words = st.sampled_from(target.words or (b"\x00",))

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            edit = draw(st.sampled_from(["set", "cut", "insert", "truncate"]))
            if edit == "set" and at < len(data):
                data[at] = draw(st.integers(0, 255))
            elif edit == "cut":
                del data[at:at + draw(st.integers(1, 16))]
            elif edit == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8) | words)
            else:
                del data[at:]
        return bytes(data)

    made = [mutated(), st.binary(max_size=256)]
    if target.structured is not None:
        made.insert(0, target.structured())
    return st.one_of(made)
