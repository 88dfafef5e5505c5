"""Parse the ``actions=`` part of ``ovs-ofctl`` flow text into Action objects.

Actions Open vSwitch knows but tunnelnet does not implement are refused by name; nothing is
dropped from a flow silently.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from tunnelnet.packet.fields import VLAN_CFI, int_to_mac, mac_to_int
from tunnelnet.switch.actions import (
    RESERVED_OUTPUTS,
    Action,
    GotoTable,
    Load,
    ModVlanPcp,
    ModVlanVid,
    Move,
    OutputField,
    OutputNormal,
    OutputPort,
    PushVlan,
    Resubmit,
    SetEth,
    SetTunnel,
    StripVlan,
    check_prereqs,
)
from tunnelnet.switch.errors import FlowSyntaxError
from tunnelnet.switch.learn_parser import parse_learn
from tunnelnet.switch.match import Match
from tunnelnet.switch.match_parser import parse_int
from tunnelnet.switch.nxm import (
    MF_NAMES,
    NXM_FIELDS,
    PREFERRED_NXM,
    SubField,
    format_value,
    hex_or_zero,
    parse_field_ref,
    parse_subfield,
)
from tunnelnet.switch.ports import OFPP_IN_PORT, OFPP_NORMAL, PortResolver, parse_port

MAX_TABLE: Final = 254  # resubmit may name table 254; flows go in 0..253 (see MAX_FLOW_TABLE)
MAX_FLOW_TABLE: Final = 253  # Open vSwitch keeps table 254 for itself (add-flow: OFPBRC_EPERM)

UNSUPPORTED_ACTIONS: Final[frozenset[str]] = frozenset(
    {
        "controller", "enqueue", "mod_nw_src", "mod_nw_dst", "mod_nw_tos", "mod_nw_ecn",
        "mod_nw_ttl", "mod_tp_src", "mod_tp_dst", "dec_ttl", "note", "ct", "ct_clear", "nat",
        "write_metadata", "group", "bundle", "bundle_load", "multipath", "exit",
        "fin_timeout", "sample", "clone", "meter", "set_queue", "pop_queue", "set_mpls_label",
        "push_mpls", "pop_mpls", "dec_mpls_ttl", "autopath", "stack_push", "stack_pop",
        "write_actions", "clear_actions", "conjunction", "check_pkt_larger", "encap", "decap",
        "dec_nsh_ttl", "delete_field", "set_mpls_tc", "set_mpls_ttl",
        "output_trunk", "debug_recirc", "debug_slow", "set_field_masked", "obfuscate",
    }
)  # fmt: skip

# set_field destinations (OXM/OVS names) -> flow-key field
_SET_FIELD_NAMES: Final[dict[str, str]] = {
    "tun_id": "tun_id",
    "tunnel_id": "tun_id",
    "eth_src": "dl_src",
    "dl_src": "dl_src",
    "eth_dst": "dl_dst",
    "dl_dst": "dl_dst",
    "arp_op": "arp_op",
    "arp_spa": "arp_spa",
    "arp_tpa": "arp_tpa",
    "arp_sha": "arp_sha",
    "arp_tha": "arp_tha",
    "metadata": "metadata",
    "in_port": "in_port",
    "vlan_tci": "vlan_tci",
    "tun_src": "tun_src",
    "tun_dst": "tun_dst",
    **{f"reg{i}": f"reg{i}" for i in range(8)},
}
_READ_ONLY: Final[frozenset[str]] = frozenset({"dl_type", "nw_proto"})


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside parentheses."""
    if "(" not in text and ")" not in text:
        return text.split(sep)
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FlowSyntaxError(f"{text!r}: unbalanced ')'")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise FlowSyntaxError(f"{text!r}: unbalanced '('")
    parts.append(text[start:])
    return parts


# Actions (instructions) OpenFlow 1.0 cannot carry: ovs-ofctl only sends such a flow with
# -O OpenFlow11 or later, and Open vSwitch then keeps its other actions as decoded from 1.3.
OPENFLOW11_ONLY: Final[frozenset[str]] = frozenset({"push_vlan", "goto_table"})


@dataclass(slots=True)
class _Ctx:
    """What parsing one action list needs to know, as ofpacts_check in OVS tracks it."""

    match: Match
    resolve: PortResolver
    table: int | None  # the flow's table (None: mod/del over all tables)
    of13: bool  # the flow needs OpenFlow 1.1+ (see OPENFLOW11_ONLY)
    has_vlan: bool  # a VLAN tag is known to be present at this point of the list


def _match_has_vlan(match: Match) -> bool:
    vlan = match.get("vlan_tci")
    return vlan is not None and bool(vlan[0] & vlan[1] & VLAN_CFI)


PROTOCOLS: Final[dict[str, bool]] = {  # ovs-ofctl -O name -> carries OpenFlow 1.1+ actions
    "OpenFlow10": False,
    **{f"OpenFlow1{minor}": True for minor in range(1, 6)},
}


def parse_actions(
    text: str,
    match: Match,
    resolve: PortResolver,
    table: int | None = None,
    protocol: str | None = None,
) -> tuple[Action, ...]:
    """``protocol`` is the OpenFlow version the flow is sent with (``ovs-ofctl -O``); None
    means the lowest that can carry it. Open vSwitch keeps a 1.1+ flow's actions as decoded
    from that version, which shows in the trace (set_field, pop_vlan) and in
    ``mod_vlan_vid``, whose 1.1+ form pushes a tag only where none is known to be."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise FlowSyntaxError(
            f"{protocol!r}: unknown OpenFlow version (one of {', '.join(PROTOCOLS)})"
        )
    items = [p.strip() for p in split_top(text.strip())] if text.strip() else []
    items = [p for p in items if p]
    if any(p.lower() == "drop" for p in items):
        if len(items) > 1:
            raise FlowSyntaxError('"drop" must not be accompanied by any other action')
        return ()
    names = [_name_arg(item)[0].lower() for item in items]
    needs_of11 = [item for item, name in zip(items, names, strict=True) if name in OPENFLOW11_ONLY]
    if needs_of11 and protocol == "OpenFlow10":
        raise FlowSyntaxError(f"{needs_of11[0]!r}: needs OpenFlow 1.1 or later, not OpenFlow10")
    of13 = bool(needs_of11) or (protocol is not None and PROTOCOLS[protocol])
    if "goto_table" in names[:-1]:
        raise FlowSyntaxError(
            f"{items[names.index('goto_table')]!r}: goto_table must be the last action "
            "(apply_actions must appear before goto_table, as in OpenFlow 1.1+)"
        )
    ctx = _Ctx(match, resolve, table, of13, _match_has_vlan(match))
    out: list[Action] = []
    for item in items:
        out.extend(_parse_one(item, ctx))
    return tuple(out)


def _name_arg(item: str) -> tuple[str, str | None, bool]:
    """'name:arg' -> (name, arg, False); 'name(args)' -> (name, args, True); 'name' -> None."""
    colon = item.find(":")
    paren = item.find("(")
    if paren != -1 and (colon == -1 or paren < colon):
        if not item.endswith(")"):
            raise FlowSyntaxError(f"{item!r}: missing ')'")
        return item[:paren].strip(), item[paren + 1 : -1], True
    if colon != -1:
        return item[:colon].strip(), item[colon + 1 :], False
    return item.strip(), None, False


def _parse_one(item: str, ctx: _Ctx) -> tuple[Action, ...]:
    name, arg, _paren = _name_arg(item)
    lname = name.lower()
    match, resolve = ctx.match, ctx.resolve
    if lname == "output":
        if not arg:
            raise FlowSyntaxError(f"{item!r}: output needs a port")
        if "[" in arg:
            return (OutputField(parse_field_ref(arg)),)
        try:
            return (_output_to(parse_port(arg, resolve, what=item)),)
        except FlowSyntaxError:
            # as ovs-ofctl: a port first, else a whole field by name (output:reg1)
            if arg.strip() in MF_NAMES or arg.strip() in NXM_FIELDS:
                return (OutputField(parse_field_ref(arg)),)
            raise
    if lname == "resubmit":
        return (_parse_resubmit(item, arg, _paren, resolve),)
    if lname == "goto_table":
        return (_parse_goto(item, arg, ctx),)
    if lname in ("mod_vlan_vid", "mod_vlan_pcp"):
        return _parse_mod_vlan(item, lname, arg, ctx)
    if lname in ("strip_vlan", "pop_vlan") and arg is None:
        if ctx.of13 and not ctx.has_vlan:
            raise FlowSyntaxError(
                f"{item!r}: pop_vlan needs a VLAN tag in the match (or pushed before) in a "
                "flow that needs OpenFlow 1.1+ (Open vSwitch: OFPBAC_MATCH_INCONSISTENT)"
            )
        ctx.has_vlan = False
        return (StripVlan("pop_vlan" if ctx.of13 else None),)
    if lname == "push_vlan":
        ethertype = parse_int(arg or "", 16, item)
        if ethertype != 0x8100:
            raise FlowSyntaxError(f"{item!r}: only push_vlan:0x8100 is supported")
        ctx.has_vlan = True
        return (PushVlan(ethertype),)
    if lname in ("mod_dl_src", "mod_dl_dst"):
        try:
            mac = mac_to_int(arg or "")
        except ValueError:
            raise FlowSyntaxError(f"{item!r}: not a MAC address") from None
        return (_set_eth(lname[4:], mac, ctx),)
    if lname in ("set_tunnel", "set_tunnel64"):
        value = parse_int(arg or "", 64, item)
        if ctx.of13:
            # OpenFlow 1.3 carries it as set_field; OVS's 1.0 dump then prints a load
            tun = parse_subfield("NXM_NX_TUN_ID[]")
            return (Load(tun, value, f"set_field:{hex_or_zero(value)}->tun_id"),)
        return (SetTunnel(value, wide=lname == "set_tunnel64" or value > 0xFFFFFFFF),)
    if lname == "load":
        return (_parse_load(item, arg or "", match),)
    if lname == "move":
        return (_parse_move(item, arg or "", match),)
    if lname == "set_field":
        return _parse_set_field(item, arg or "", ctx)
    if lname == "learn" and _paren:
        return (parse_learn(item, arg or "", match, resolve),)
    if lname in UNSUPPORTED_ACTIONS:
        raise FlowSyntaxError(f"{item!r}: action {name} is not supported by tunnelnet")
    if arg is None:
        # A bare port: number, reserved name (NORMAL, FLOOD, ALL, IN_PORT, LOCAL) or port name.
        if lname == "controller":
            raise FlowSyntaxError(f"{item!r}: CONTROLLER is not supported by tunnelnet")
        try:
            return (_output_to(parse_port(name, resolve, what=item)),)
        except FlowSyntaxError:
            raise FlowSyntaxError(f"{item!r}: unknown action") from None
    raise FlowSyntaxError(f"{item!r}: unknown action {name}")


def _parse_goto(item: str, arg: str | None, ctx: _Ctx) -> Action:
    table = parse_int(arg or "", 8, item)
    if table > MAX_TABLE:
        raise FlowSyntaxError(f"{item!r}: table {table} out of range 0..{MAX_TABLE}")
    if ctx.table is not None and table <= ctx.table:
        raise FlowSyntaxError(
            f"{item!r}: goto_table must go to a later table than the flow's table "
            f"{ctx.table} (Open vSwitch: OFPBIC_BAD_TABLE_ID)"
        )
    return GotoTable(table)


def _parse_mod_vlan(item: str, lname: str, arg: str | None, ctx: _Ctx) -> tuple[Action, ...]:
    if lname == "mod_vlan_vid":
        vid = parse_int(arg or "", 16, item)
        if vid > 0x0FFF:
            raise FlowSyntaxError(f"{item!r}: {vid} is not a valid VLAN id (0..4095)")
        return _vlan_set(ModVlanVid(vid), f"set_field:{vid | VLAN_CFI}->vlan_vid", ctx)
    pcp = parse_int(arg or "", 8, item)
    if pcp > 7:
        raise FlowSyntaxError(f"{item!r}: VLAN priority must be 0..7")
    return _vlan_set(ModVlanPcp(pcp), f"set_field:{pcp}->vlan_pcp", ctx)


def _vlan_set(action: ModVlanVid | ModVlanPcp, shown: str, ctx: _Ctx) -> tuple[Action, ...]:
    """mod_vlan_vid/pcp push a tag when there is none. In a flow sent as OpenFlow 1.3 that
    is an explicit push_vlan (only when no tag is known to be there, as OVS's encoder
    decides from the match and the actions before) followed by set_field."""
    if not ctx.of13:
        ctx.has_vlan = True
        return (action,)
    pushed: tuple[Action, ...] = () if ctx.has_vlan else (PushVlan(0x8100),)
    ctx.has_vlan = True
    if isinstance(action, ModVlanVid):
        return (*pushed, ModVlanVid(action.vid, shown))
    return (*pushed, ModVlanPcp(action.pcp, shown))


def _set_eth(field_name: str, mac: int, ctx: _Ctx) -> Action:
    oxm = "eth_src" if field_name == "dl_src" else "eth_dst"
    return SetEth(field_name, mac, f"set_field:{int_to_mac(mac)}->{oxm}" if ctx.of13 else None)


def _output_to(port: int) -> Action:
    if port == OFPP_NORMAL:
        return OutputNormal()
    if port in RESERVED_OUTPUTS:
        return RESERVED_OUTPUTS[port]
    if port > 0xFF00 and port != 0xFFFE:
        raise FlowSyntaxError(f"output to reserved port {port:#x} is not supported")
    return OutputPort(port)


def _parse_resubmit(item: str, arg: str | None, paren: bool, resolve: PortResolver) -> Action:
    if not arg:
        raise FlowSyntaxError(f"{item!r}: resubmit needs a port or a table")
    if not paren:
        only_port = parse_port(arg, resolve, what=item)
        if only_port == OFPP_IN_PORT:
            raise FlowSyntaxError(f"{item!r}: at least one in_port or table must be given")
        return Resubmit(only_port, None)
    parts = [p.strip() for p in arg.split(",")]
    if len(parts) > 2:
        raise FlowSyntaxError(f"{item!r}: resubmit(port,table[,ct]) with ct is not supported")
    port_text = parts[0]
    table_text = parts[1] if len(parts) == 2 else ""
    port: int | None = parse_port(port_text, resolve, what=item) if port_text else None
    if port == OFPP_IN_PORT:
        port = None  # resubmit(IN_PORT,T) is the same as resubmit(,T), printed so by OVS
    table: int | None = None
    if table_text:
        table = parse_int(table_text, 8, item)
        if table > MAX_TABLE:
            raise FlowSyntaxError(f"{item!r}: table {table} out of range 0..{MAX_TABLE}")
    if port is None and table is None:
        raise FlowSyntaxError(f"{item!r}: at least one in_port or table must be given")
    if table is None:
        return Resubmit(port, None)
    return Resubmit(port, table)


def _check_dst(item: str, dst: SubField, match: Match) -> None:
    if dst.field in _READ_ONLY:
        raise FlowSyntaxError(f"{item!r}: destination field {dst.nxm.name} is not writable")
    problem = check_prereqs(dst, match, item)
    if problem:
        raise FlowSyntaxError(problem)


def _parse_load(item: str, arg: str, match: Match) -> Action:
    if "->" not in arg:
        raise FlowSyntaxError(f"{item!r}: expected load:VALUE->FIELD[range]")
    value_text, dst_text = arg.split("->", 1)
    dst = parse_field_ref(dst_text)
    value = parse_int(value_text, 64 if dst.n_bits == 64 else 128, item)
    if value >= 1 << dst.n_bits:
        raise FlowSyntaxError(
            f"{item!r}: value {value_text.strip()} does not fit into {dst.n_bits} bits"
        )
    _check_dst(item, dst, match)
    return Load(dst, value)


def _parse_move(item: str, arg: str, match: Match) -> Action:
    if "->" not in arg:
        raise FlowSyntaxError(f"{item!r}: expected move:SRC[range]->DST[range]")
    src_text, dst_text = arg.split("->", 1)
    src = parse_field_ref(src_text)
    dst = parse_field_ref(dst_text)
    if src.n_bits != dst.n_bits:
        raise FlowSyntaxError(
            f"{item!r}: source is {src.n_bits} bits wide but destination is {dst.n_bits}"
        )
    problem = check_prereqs(src, match, item)
    if problem:
        raise FlowSyntaxError(problem)
    _check_dst(item, dst, match)
    return Move(src, dst)


def _parse_set_field(item: str, arg: str, ctx: _Ctx) -> tuple[Action, ...]:
    if "->" not in arg:
        raise FlowSyntaxError(f"{item!r}: expected set_field:VALUE->FIELD")
    value_text, field_name = (p.strip() for p in arg.split("->", 1))
    if field_name in ("vlan_vid", "vlan_pcp"):
        if not ctx.has_vlan:
            raise FlowSyntaxError(
                f"{item!r}: set_field {field_name} needs a VLAN tag, from the match or a "
                "push_vlan before it (Open vSwitch: OFPBAC_MATCH_INCONSISTENT)"
            )
        if field_name == "vlan_vid":
            vid = parse_int(value_text, 13, item) & 0x0FFF
            shown = f"set_field:{vid | VLAN_CFI}->vlan_vid" if ctx.of13 else None
            return (ModVlanVid(vid, shown),)
        pcp = parse_int(value_text, 3, item)
        return (ModVlanPcp(pcp, f"set_field:{pcp}->vlan_pcp" if ctx.of13 else None),)
    if field_name == "vlan_tci" and not ctx.of13:
        # OpenFlow 1.0 carries it as its VLAN actions, and OVS shows it so: a TCI with the
        # CFI bit is mod_vlan_vid + mod_vlan_pcp (a tag pushed if none), without it strip_vlan.
        # ovs-ofctl's 1.0 encoder reads the value only: a mask is checked, then ignored
        # (set_field:0x1005/0xfff->vlan_tci sets VID 5 and PCP 0 in OVS 3.1), so here too.
        tci_text, _, tci_mask = value_text.partition("/")
        tci = parse_int(tci_text, 16, item)
        if tci_mask:
            parse_int(tci_mask, 16, item)
        if not tci & VLAN_CFI:
            ctx.has_vlan = False
            return (StripVlan(),)
        ctx.has_vlan = True
        return (ModVlanVid(tci & 0x0FFF), ModVlanPcp(tci >> 13))
    key_field = _SET_FIELD_NAMES.get(field_name)
    if key_field is None:
        raise FlowSyntaxError(f"{item!r}: set_field to {field_name!r} is not supported")
    if key_field in ("dl_src", "dl_dst"):
        try:
            return (_set_eth(key_field, mac_to_int(value_text), ctx),)
        except ValueError:
            raise FlowSyntaxError(f"{item!r}: not a MAC address") from None
    whole = parse_subfield(f"{PREFERRED_NXM[key_field]}[]")
    value_part, _, mask_part = value_text.partition("/")
    value = _field_value(item, key_field, value_part, ctx.resolve)
    dst = whole
    if mask_part:
        mask = _field_value(item, key_field, mask_part, ctx.resolve)
        low = (mask & -mask).bit_length() - 1 if mask else 0
        n_bits = mask.bit_length() - low
        if mask == 0 or mask != ((1 << n_bits) - 1) << low:
            raise FlowSyntaxError(f"{item!r}: only contiguous masks are supported")
        dst = SubField(whole.nxm, low, n_bits, n_bits == whole.nxm.bits)
        value = (value & mask) >> low
    _check_dst(item, dst, ctx.match)
    shown = None
    if ctx.of13 and not mask_part:
        # a 1.3 flow keeps set_field, shown by the field's name in its own syntax
        # (set_field:0x1005->vlan_tci, set_field:3->in_port, set_field:10.0.0.1->arp_spa)
        shown = f"set_field:{format_value(whole.nxm, value)}->{whole.nxm.mf}"
    return (Load(dst, value, shown),)


def _field_value(item: str, key_field: str, text: str, resolve: PortResolver) -> int:
    if key_field in ("arp_sha", "arp_tha"):
        try:
            return mac_to_int(text)
        except ValueError:
            raise FlowSyntaxError(f"{item!r}: not a MAC address") from None
    if key_field in ("arp_spa", "arp_tpa", "tun_src", "tun_dst"):
        try:
            return int(ipaddress.IPv4Address(text))
        except ValueError:
            raise FlowSyntaxError(f"{item!r}: not an IPv4 address") from None
    if key_field == "in_port":
        return parse_port(text, resolve, what=item)
    return parse_int(text, NXM_FIELDS[PREFERRED_NXM[key_field]].bits, item)
