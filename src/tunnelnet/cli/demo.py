"""``tunnelnet demo``: what a tunnel does to a VM's frame, shown layer by layer.

A first look for someone learning overlays: a VM's ping, the same frame inside VXLAN and inside
GRE with the bytes each adds and the MTU that leaves the VM, the VXLAN source port that keeps
one flow on one underlay path, and the decapsulation on the far side. Every number printed is
computed from real bytes by tunnelnet.packet, nothing is canned.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass

import click

from tunnelnet.cli.packet import layer_lines
from tunnelnet.packet import (
    decode,
    encode,
    extract_flow_key,
    gre_decap,
    gre_encap,
    network_mtu,
    overhead,
    source_port,
    tunnel_kinds,
    vxlan_decap,
    vxlan_encap,
)
from tunnelnet.packet.decode import Layer
from tunnelnet.packet.ethernet import Ethernet
from tunnelnet.packet.fields import FlowKey, int_to_mac
from tunnelnet.packet.icmp import Icmp
from tunnelnet.packet.ipv4 import IPv4
from tunnelnet.packet.raw import Payload
from tunnelnet.packet.tcp import Tcp

VM_A = ("fa:16:3e:00:00:0a", "10.0.0.1")
VM_B = ("fa:16:3e:00:00:0b", "10.0.0.2")
VM_C = ("fa:16:3e:00:00:0c", "10.0.0.3")
HV1 = ("52:54:00:00:01:01", "192.0.2.1")
HV2 = ("52:54:00:00:01:02", "192.0.2.2")
SEGMENT = 1001
PING_DATA = bytes(range(0x10, 0x10 + 56))  # 56 bytes, as ping sends by default


def ping(seq: int) -> bytes:
    layers: list[Layer] = [
        Ethernet(dst=VM_B[0], src=VM_A[0], type=0x0800),
        IPv4(src=VM_A[1], dst=VM_B[1], proto=1, ident=seq, flags=2),
        Icmp.echo(8, 0x4242, seq),
        Payload(PING_DATA),
    ]
    return encode(layers)


def web_request() -> bytes:
    layers: list[Layer] = [
        Ethernet(dst=VM_C[0], src=VM_A[0], type=0x0800),
        IPv4(src=VM_A[1], dst=VM_C[1], proto=6, flags=2),
        Tcp(sport=40000, dport=80, seq=1, flags=0x002),
    ]
    return encode(layers)


def flow_text(key: FlowKey) -> str:
    """The key in ofproto/trace's words (the fields that this ICMP packet has)."""
    def ip(value: int) -> str:
        return ".".join(str(value >> s & 0xFF) for s in (24, 16, 8, 0))

    return (f"tun_id={key['tun_id']:#x},in_port={key['in_port']},icmp,"
            f"dl_src={int_to_mac(key['dl_src'])},dl_dst={int_to_mac(key['dl_dst'])},"
            f"nw_src={ip(key['nw_src'])},nw_dst={ip(key['nw_dst'])},nw_ttl={key['nw_ttl']},"
            f"icmp_type={key['tp_src']},icmp_code={key['tp_dst']}")


def _indent(lines: list[str], prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in lines)


def _hex_groups(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def _wrap(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=92)


@dataclass(frozen=True)
class Tunnelled:
    """One encapsulation of the demo frame and what the far side gets back out of it."""

    kind: str
    frame: bytes
    header: bytes  # the tunnel header alone (VXLAN 8 bytes, GRE with key 8 bytes)
    decap_key: int
    decap_equal: bool

    def to_json(self, inner: bytes) -> dict[str, object]:
        return {"hex": self.frame.hex(), "length": len(self.frame),
                "overhead": len(self.frame) - len(inner),
                "declared_overhead": overhead(self.kind), "vm_mtu": network_mtu(self.kind),
                # against the underlay's IP MTU, as Neutron counts it
                "mtu_overhead": dict(tunnel_kinds.kind(self.kind).mtu_parts),
                "layers": [layer.to_dict() for layer in decode(self.frame)],
                "header_hex": self.header.hex(), "decap_key": self.decap_key,
                "decap_equal": self.decap_equal}


@dataclass(frozen=True)
class Demo:
    inner: bytes
    vxlan: Tunnelled
    gre: Tunnelled
    source_ports: dict[str, int]
    flow_key: str

    def to_json(self) -> dict[str, object]:
        return {"inner": {"hex": self.inner.hex(), "length": len(self.inner),
                          "layers": [layer.to_dict() for layer in decode(self.inner)]},
                "vxlan": self.vxlan.to_json(self.inner), "gre": self.gre.to_json(self.inner),
                "source_ports": self.source_ports, "flow_key": self.flow_key}


def build() -> Demo:
    """Everything the demo shows, computed from bytes."""
    inner = ping(1)
    vx = vxlan_encap(inner, SEGMENT, HV1[1], HV2[1], HV1[0], HV2[0])
    gr = gre_encap(inner, SEGMENT, HV1[1], HV2[1], HV1[0], HV2[0])
    vni, vx_inner = vxlan_decap(vx)
    key, gr_inner = gre_decap(gr)
    return Demo(
        inner=inner,
        vxlan=Tunnelled("vxlan", vx, vx[42:50], vni, bytes(vx_inner) == inner),
        gre=Tunnelled("gre", gr, gr[34:42], key, bytes(gr_inner) == inner),
        source_ports={"ping seq 1": source_port(inner),
                      "ping seq 2 (same flow)": source_port(ping(2)),
                      "tcp 10.0.0.1:40000 -> 10.0.0.3:80": source_port(web_request())},
        flow_key=flow_text(extract_flow_key(vx_inner, 1, vni)),
    )


def _overhead_lines(kind: str) -> list[str]:
    """What the tunnel costs, as Neutron's documentation counts it: the underlay's IP MTU
    must hold the outer IP packet, and that carries the VM's whole frame, inner Ethernet
    header included; the outer Ethernet header is no part of any IP MTU."""
    entry = tunnel_kinds.kind(kind)
    return [
        "What the tunnel costs, as Neutron counts it against the underlay's IP MTU:",
        f"  {entry.mtu_sum} bytes",
        "The outer IP packet carries the VM's whole frame, so the VM's own Ethernet header",
        "counts; the outer Ethernet header does not (no IP MTU includes its link's header).",
        f"On a 1500-byte underlay the VM's MTU must be 1500 - {overhead(kind)} = "
        f"{network_mtu(kind)}.",
    ]


def render(demo: Demo) -> str:
    inner, vx, gr = demo.inner, demo.vxlan.frame, demo.gre.frame
    port_lines = [f"{name:<36} UDP source port {port}" for name, port in demo.source_ports.items()]
    out = [
        "tunnelnet demo: a VM's frame inside VXLAN and GRE tunnels",
        "=" * 58,
        "",
        _wrap(f"""VM A ({VM_A[0]}, {VM_A[1]}) on hypervisor 1 pings VM B ({VM_B[0]},
        {VM_B[1]}) on hypervisor 2. Both are on one tenant network, segment {SEGMENT}. The
        hypervisors reach each other over the underlay: {HV1[1]} and {HV2[1]}."""),
        "",
        f"1. The frame VM A sends ({len(inner)} bytes):",
        _indent(layer_lines(decode(inner))),
        "",
        f"2. In VXLAN (RFC 7348), hypervisor 1 -> hypervisor 2 ({len(vx)} bytes):",
        _indent(layer_lines(decode(vx))),
        "",
        _indent([
            f"VXLAN header bytes: {_hex_groups(demo.vxlan.header)}",
            "  08        flags: the I bit says the VNI is valid",
            "  00 00 00  reserved",
            f"  {_hex_groups(demo.vxlan.header[4:7])}  VNI {SEGMENT} (24 bits: 16 million "
            "segments)",
            "  00        reserved",
            *_overhead_lines("vxlan"),
        ]),
        "",
        f"3. In GRE with a key (RFC 2784, RFC 2890), the same frame ({len(gr)} bytes):",
        _indent(layer_lines(decode(gr))),
        "",
        _indent([
            f"GRE header bytes: {_hex_groups(demo.gre.header)}",
            "  20 00        K bit set (a key follows), version 0",
            "  65 58        protocol 0x6558: an Ethernet frame follows",
            f"  {_hex_groups(demo.gre.header[4:8])}  key {SEGMENT} (32 bits)",
            *_overhead_lines("gre"),
        ]),
        "",
        "4. The VXLAN UDP source port is a hash of the inner flow (RFC 7348 section 5):",
        _indent(port_lines),
        _indent(textwrap.wrap(
            "One flow keeps one port, so routers that spread traffic over equal paths (ECMP) "
            "keep its packets in order on one path; other flows get other ports and spread.",
            width=88)),
        "",
        "5. Hypervisor 2 takes the frame out again:",
        _indent([
            f"VXLAN: VNI {demo.vxlan.decap_key}, inner frame identical: "
            f"{'yes' if demo.vxlan.decap_equal else 'NO'}",
            f"GRE:   key {demo.gre.decap_key}, inner frame identical: "
            f"{'yes' if demo.gre.decap_equal else 'NO'}",
            "The switch on hypervisor 2 sees this flow (the VNI becomes tun_id; in_port is the",
            "tunnel port it came in on):",
            f"  {demo.flow_key}",
        ]),
        "",
        "Try it yourself with VM A's frame:",
        f"    F={inner.hex()}",
        f"    tunnelnet packet encap --type vxlan --key {SEGMENT} --outer-src {HV1[1]} "
        f"--outer-dst {HV2[1]} $F | tunnelnet packet decode -",
        "    tunnelnet packet decap [--json] HEX",
    ]
    return "\n".join(out)


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print the computed values as JSON.")
def cli(as_json: bool) -> None:
    """Show a VM's frame inside VXLAN and GRE, layer by layer, with overheads and MTUs."""
    demo = build()
    if as_json:
        click.echo(json.dumps(demo.to_json(), indent=2))
    else:
        click.echo(render(demo))
