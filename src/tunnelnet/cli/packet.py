"""``tunnelnet packet``: decode, encapsulate and decapsulate frames given as hex.

Hex may be split by whitespace or colons (as tcpdump -xx, Wireshark's "copy as hex" or
``ovs-ofctl`` print it); ``-`` reads it from stdin. Errors are one line, exit status 1.
"""

from __future__ import annotations

import json
import re
import sys

import click

from tunnelnet.packet import PacketError, decode, tunnel_kinds
from tunnelnet.packet.decode import Layer
from tunnelnet.packet.tcp import Tcp
from tunnelnet.packet.tunnel import decap, encap, overhead

DEFAULT_OUTER_SMAC = "02:00:00:00:00:01"
DEFAULT_OUTER_DMAC = "02:00:00:00:00:02"

ETHER_TYPES = {0x0800: "IPv4", 0x0806: "ARP", 0x86DD: "IPv6", 0x8100: "802.1Q",
               0x88A8: "802.1ad", 0x6558: "transparent Ethernet bridging", 0x05FF: "802.3"}
IP_PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 58: "ICMPv6"}
ICMP_TYPES = {0: "echo reply", 3: "destination unreachable", 8: "echo request",
              11: "time exceeded", 128: "echo request", 129: "echo reply",
              135: "neighbor solicitation", 136: "neighbor advertisement"}
ARP_OPS = {1: "request", 2: "reply"}
TITLES = {"ethernet": "Ethernet", "vlan": "802.1Q", "arp": "ARP", "ipv4": "IPv4",
          "ipv6": "IPv6", "icmp": "ICMP", "icmpv6": "ICMPv6", "udp": "UDP", "tcp": "TCP",
          "payload": "payload", "padding": "padding"}
TITLES.update({entry.name: entry.title for entry in tunnel_kinds.all_kinds()})


def parse_hex(text: str) -> bytes:
    """Bytes from hex text with optional whitespace, colons and a leading 0x."""
    cleaned = re.sub(r"[\s:]", "", text)
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    bad = re.search(r"[^0-9a-fA-F]", cleaned)
    if bad:
        raise PacketError(f"not hexadecimal: {bad.group()!r} (character {bad.start() + 1} of "
                          "the digits)")
    if not cleaned:
        raise PacketError("no hex digits given")
    if len(cleaned) % 2:
        raise PacketError(f"odd number of hex digits ({len(cleaned)}): a byte needs two")
    return bytes.fromhex(cleaned)


def read_frame(arg: str) -> bytes:
    return parse_hex(sys.stdin.read() if arg == "-" else arg)


def _named(value: int, names: dict[int, str], width: int = 4) -> str:
    """``0x0800 (IPv4)`` for EtherTypes (width 4, hex as usual), ``17 (UDP)`` for width 0."""
    label = names.get(value)
    number = f"0x{value:0{width}x}" if width else str(value)
    return f"{number} ({label})" if label else number


def describe(layer: Layer) -> str:
    """One line for a layer, like a condensed ``tshark -V`` line."""
    d = layer.to_dict()
    name = str(d["name"])
    parts: list[str] = []
    if name == "ethernet":
        parts = [f"{d['src']} -> {d['dst']}", "type " + _named(int(str(d["type"])), ETHER_TYPES)]
    elif name == "vlan":
        parts = [f"vid {d['vid']}", f"pcp {d['pcp']}", f"dei {d['dei']}",
                 "type " + _named(int(str(d["type"])), ETHER_TYPES)]
    elif name == "arp":
        op = int(str(d["op"]))
        parts = [f"{ARP_OPS.get(op, f'op {op}')}", f"sender {d['sha']} {d['spa']}",
                 f"target {d['tha']} {d['tpa']}"]
    elif name == "ipv4":
        flags = int(str(d["flags"]))
        flag_text = "+".join(n for bit, n in ((2, "DF"), (1, "MF")) if flags & bit) or "none"
        parts = [f"{d['src']} -> {d['dst']}",
                 "proto " + _named(int(str(d["proto"])), IP_PROTOCOLS, 0),
                 f"ttl {d['ttl']}", f"tos 0x{int(str(d['tos'])):02x}", f"id {d['id']}",
                 f"flags {flag_text}", f"frag {d['frag_offset']}", f"length {d['length']}",
                 f"checksum 0x{int(str(d['checksum'])):04x}"]
        if d["options"]:
            parts.append(f"options {d['options']}")
    elif name == "ipv6":
        parts = [f"{d['src']} -> {d['dst']}",
                 "next header " + _named(int(str(d["next_header"])), IP_PROTOCOLS, 0),
                 f"hop limit {d['hop_limit']}", f"class 0x{int(str(d['traffic_class'])):02x}",
                 f"flow 0x{int(str(d['flow_label'])):05x}", f"length {d['payload_length']}"]
    elif name in ("icmp", "icmpv6"):
        type_ = int(str(d["type"]))
        parts = [f"type {type_}" + (f" ({ICMP_TYPES[type_]})" if type_ in ICMP_TYPES else ""),
                 f"code {d['code']}"]
        parts += [f"id {d['id']}", f"seq {d['seq']}"] if "id" in d else []
        parts.append(f"checksum 0x{int(str(d['checksum'])):04x}")
    elif name == "udp":
        csum = int(str(d["checksum"]))
        parts = [f"{d['sport']} -> {d['dport']}", f"length {d['length']}",
                 f"checksum 0x{csum:04x}" + (" (none)" if csum == 0 else "")]
    elif name == "tcp":
        parts = [f"{d['sport']} -> {d['dport']}",
                 "flags [" + (",".join(layer.flag_names()) if isinstance(layer, Tcp) else "")
                 + "]",
                 f"seq {d['seq']}", f"ack {d['ack']}", f"window {d['window']}",
                 f"checksum 0x{int(str(d['checksum'])):04x}"]
    elif name == "vxlan":
        parts = [f"vni {d['vni']}", f"flags 0x{int(str(d['flags'])):02x}"]
    elif name == "geneve":
        parts = [f"vni {d['vni']}", "protocol " + _named(int(str(d["protocol"])), ETHER_TYPES)]
        parts += [flag for flag in ("oam", "critical") if d[flag]]
        options = d["options"]
        assert isinstance(options, list)
        parts += [f"option class 0x{int(o['class']):04x} type 0x{int(o['type']):02x}"
                  f"{' (critical)' if o['critical'] else ''} data {o['data'] or '-'}"
                  for o in options]
    elif name == "gre":
        parts = [f"key {d['key']}" if d["key"] is not None else "no key",
                 "protocol " + _named(int(str(d["protocol"])), ETHER_TYPES)]
        if d["seq"] is not None:
            parts.append(f"seq {d['seq']}")
        if d["checksum"] is not None:
            parts.append(f"checksum 0x{int(str(d['checksum'])):04x}")
    else:
        data = str(d["data"])
        parts = [f"{d['length']} bytes", data[:64] + ("..." if len(data) > 64 else "")]
    return f"{TITLES.get(name, name):<9} " + "  ".join(parts)


def layer_lines(layers: list[Layer]) -> list[str]:
    """The layers as text, indented one step more inside each tunnel (tshark -V, shortened)."""
    lines: list[str] = []
    depth = 0
    for index, layer in enumerate(layers):
        if layer.name == "ethernet" and index:
            depth += 1
        lines.append("  " * depth + describe(layer))
    return lines


def _print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2))


@click.group("packet")
def cli() -> None:
    """Decode, encapsulate and decapsulate frames given as hex (`-` reads stdin)."""


@cli.command("decode")
@click.argument("frame_hex", metavar="HEX")
@click.option("--json", "as_json", is_flag=True, help="Print the layers as JSON.")
def decode_cmd(frame_hex: str, as_json: bool) -> None:
    """Print the layers of a frame, outer to inner, through VXLAN, Geneve and GRE tunnels."""
    layers = decode(read_frame(frame_hex))
    if as_json:
        _print_json({"layers": [layer.to_dict() for layer in layers]})
    else:
        click.echo("\n".join(layer_lines(layers)))


@cli.command("encap")
@click.argument("frame_hex", metavar="HEX")
@click.option("--type", "kind", type=click.Choice(tunnel_kinds.names()), required=True,
              help="Tunnel type.")
@click.option("--key", type=int, required=True,
              help=", ".join(f"{k.title} {k.key_name} ({k.key_bits} bits)"
                             for k in tunnel_kinds.all_kinds()) + ".")
@click.option("--outer-src", required=True, help="Outer IPv4 source (this tunnel endpoint).")
@click.option("--outer-dst", required=True, help="Outer IPv4 destination (the peer).")
@click.option("--outer-smac", default=DEFAULT_OUTER_SMAC, show_default=True,
              help="Outer Ethernet source.")
@click.option("--outer-dmac", default=DEFAULT_OUTER_DMAC, show_default=True,
              help="Outer Ethernet destination (the next hop's MAC).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def encap_cmd(frame_hex: str, kind: str, key: int, outer_src: str, outer_dst: str,
              outer_smac: str, outer_dmac: str, as_json: bool) -> None:
    """Put the Ethernet frame HEX into a tunnel packet; print the outer frame as hex."""
    inner = read_frame(frame_hex)
    outer = encap(kind, inner, key, outer_src, outer_dst, outer_smac, outer_dmac)
    if as_json:
        _print_json({"type": kind, "key": key, "frame": outer.hex(), "length": len(outer),
                     "overhead": overhead(kind)})
    else:
        click.echo(outer.hex())


@cli.command("decap")
@click.argument("frame_hex", metavar="HEX")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def decap_cmd(frame_hex: str, as_json: bool) -> None:
    """Take the inner frame out of a tunnel frame; print its kind, key and the inner hex."""
    kind, key, inner = decap(_outer_ipv4(read_frame(frame_hex)))
    if as_json:
        _print_json({"type": kind, "key": key, "inner": bytes(inner).hex()})
    else:
        click.echo(f"{kind} key {key}")
        click.echo(bytes(inner).hex())


def _outer_ipv4(frame: bytes) -> bytes:
    """The frame, when it has an outer IPv4 header (after an optional 802.1Q tag)."""
    ip_at = 18 if frame[12:14] == b"\x81\x00" else 14
    if len(frame) < ip_at + 20 or frame[ip_at - 2 : ip_at] != b"\x08\x00":
        raise PacketError("not a tunnel frame: no outer IPv4 header", ip_at - 2)
    return frame
