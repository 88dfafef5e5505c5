"""Rewriting a frame's bytes to match a flow key that the switch's actions changed.

The switch works on flow keys: ``strip_vlan``, ``mod_vlan_vid``, ``mod_dl_src``, the ARP
responder's ``move``/``load`` on ARP fields, ``mod_nw_*``/``mod_tp_*`` change the key, and the
datapath calls ``apply_key_changes(frame, old_key, new_key)`` once per output to make the bytes
say the same. Metadata (``in_port``, ``tun_id``, registers...) is not in the bytes and ignored.

The frame is the truth for its structure (is it ARP, what follows the tags); the keys say what
to change, and the old key says which of its leading VLAN tags were parsed (``vlan_tci``, and
``vlan_tci1`` for a second one: a tag the extractor left as payload is not touched). Tags are
changed as a stack, the way Open vSwitch commits VLAN changes to its datapath: the innermost
tags that stay equal are kept as they are (TPID included), the rest of the old ones are
popped and the new ones pushed (TPID 0x8100), or, when as many go as come, rewritten in place
(keeping their TPIDs). So a push onto a tagged frame inserts an outer tag and a pop of one of
two removes the outer one (QinQ).

Checksums are kept right: the IPv4 header checksum is recomputed and the TCP/UDP checksum
adjusted incrementally (RFC 1624) for address and port changes. A change this module cannot
express in bytes (``dl_type``, ``nw_proto``, IPv6 addresses, ...) raises PacketError
rather than sending a frame that disagrees with its key.
"""

from __future__ import annotations

import struct
from typing import Final

from tunnelnet.packet._wire import Buffer
from tunnelnet.packet.checksum import internet_checksum
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_QINQ,
    ETH_TYPE_VLAN,
    IPPROTO_TCP,
    IPPROTO_UDP,
    METADATA_FIELDS,
    VLAN_CFI,
    FlowKey,
)

_H: Final = struct.Struct("!H")
_I: Final = struct.Struct("!I")
_MAC: Final = struct.Struct("!IH")  # 48 bits as 32 + 16
_TAG: Final = struct.Struct("!HH")  # TPID, TCI

_L2_FIELDS: Final = frozenset({"dl_src", "dl_dst", "vlan_tci", "vlan_tci1"})
_TAG_TYPES: Final = (ETH_TYPE_VLAN, ETH_TYPE_QINQ)
_ARP_FIELDS: Final = frozenset({"arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha"})
_IP4_FIELDS: Final = frozenset({"nw_src", "nw_dst", "nw_tos", "nw_ecn", "nw_ttl"})
_L4_FIELDS: Final = frozenset({"tp_src", "tp_dst"})
# offset of each ARP field in the ARP packet
_ARP_AT: Final = {"arp_op": 6, "arp_sha": 8, "arp_spa": 14, "arp_tha": 18, "arp_tpa": 24}


def _put_mac(buf: bytearray, off: int, value: int) -> None:
    _MAC.pack_into(buf, off, value >> 16, value & 0xFFFF)


def _adjust(csum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3: the checksum after one 16-bit word changes from ``old`` to ``new``."""
    total = (~csum & 0xFFFF) + (~old & 0xFFFF) + new
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def apply_key_changes(frame: Buffer, old_key: FlowKey, new_key: FlowKey) -> bytes:
    """The bytes of ``frame`` (whose key is ``old_key``) changed to carry ``new_key``."""
    if old_key == new_key:
        return bytes(frame)
    # fields added, removed or changed: one C-level set operation over the (name, value) pairs
    changed = {field for field, _ in old_key.items() ^ new_key.items()} - METADATA_FIELDS
    if not changed:
        return bytes(frame)
    buf = bytearray(frame)
    if len(buf) < 14:
        raise PacketError(f"Ethernet header truncated: {len(buf)} of 14 bytes", 0)
    # the parsed tags (the old key's), checked against the bytes: 0, 1 or 2 before dl_type
    if not old_key.get("vlan_tci", 0) & VLAN_CFI:
        l3 = 14
    else:
        l3 = 22 if "vlan_tci1" in old_key else 18  # (present only while tagged: fields.py)
        if len(buf) < l3:
            raise PacketError(f"VLAN tag truncated: {len(buf) - 14} of {l3 - 14} bytes", 14)
        if _H.unpack_from(buf, 12)[0] not in _TAG_TYPES or (
                l3 == 22 and _H.unpack_from(buf, 16)[0] not in _TAG_TYPES):
            raise PacketError("the frame has fewer VLAN tags than its flow key", 12)
    dl_type = _H.unpack_from(buf, l3 - 2)[0]

    rest = changed - _L2_FIELDS
    if rest:
        if dl_type == ETH_TYPE_ARP and rest <= _ARP_FIELDS:
            _rewrite_arp(buf, l3, rest, new_key)
        elif dl_type == ETH_TYPE_IPV4 and rest <= _IP4_FIELDS | _L4_FIELDS:
            _rewrite_ipv4(buf, l3, rest, new_key)
        else:
            names = ", ".join(sorted(rest))
            raise PacketError(f"cannot rewrite {names} in a frame of type 0x{dl_type:04x}")

    if "dl_dst" in changed:
        _put_mac(buf, 0, _need(new_key, "dl_dst"))
    if "dl_src" in changed:
        _put_mac(buf, 6, _need(new_key, "dl_src"))
    if "vlan_tci" in changed or "vlan_tci1" in changed:
        if l3 < 22 and "vlan_tci1" not in new_key:
            # at most one tag before and after (nearly always): set, push or pop it
            tci = new_key.get("vlan_tci", 0)
            # Open vSwitch's CFI bit means "tagged"; on the wire the DEI bit is sent as 0.
            if tci & VLAN_CFI:
                if l3 == 18:
                    _H.pack_into(buf, 14, tci & ~VLAN_CFI & 0xFFFF)
                else:
                    buf[12:12] = _TAG.pack(ETH_TYPE_VLAN, tci & ~VLAN_CFI & 0xFFFF)
            elif l3 == 18:
                del buf[12:16]
        else:
            _retag(buf, _tags(old_key), _tags(new_key))
    return bytes(buf)


def _tags(key: FlowKey) -> list[int]:
    """The key's VLAN tags, outer first (TCIs with the CFI bit): none, one, or two."""
    tci = key.get("vlan_tci", 0)
    if not tci & VLAN_CFI:
        return []
    inner = key.get("vlan_tci1", 0)
    return [tci, inner] if inner & VLAN_CFI else [tci]


def _retag(buf: bytearray, old: list[int], new: list[int]) -> None:
    """Make the tags at offset 12 of ``buf`` (which are ``old``) say ``new``."""
    n_old, n_new = len(old), len(new)
    while n_old and n_new and old[n_old - 1] == new[n_new - 1]:
        n_old -= 1  # an equal innermost tag stays, bytes and TPID as they are
        n_new -= 1
    if n_old == n_new:
        for i in range(n_new):
            _H.pack_into(buf, 14 + 4 * i, new[i] & ~VLAN_CFI & 0xFFFF)
    else:
        buf[12 : 12 + 4 * n_old] = b"".join(
            _TAG.pack(ETH_TYPE_VLAN, tci & ~VLAN_CFI & 0xFFFF) for tci in new[:n_new]
        )


def _need(key: FlowKey, field: str) -> int:
    try:
        return key[field]
    except KeyError:
        raise PacketError(f"cannot remove {field} from a frame") from None


def _rewrite_arp(buf: bytearray, off: int, fields: set[str], key: FlowKey) -> None:
    if len(buf) - off < 28:
        raise PacketError(f"ARP packet truncated: {len(buf) - off} of 28 bytes", off)
    for field in fields:
        at = off + _ARP_AT[field]
        value = _need(key, field)
        if field == "arp_op":
            _H.pack_into(buf, at, value)
        elif field in ("arp_sha", "arp_tha"):
            _put_mac(buf, at, value)
        else:
            _I.pack_into(buf, at, value)


def _rewrite_ipv4(buf: bytearray, off: int, fields: set[str], new: FlowKey) -> None:
    if len(buf) - off < 20:
        raise PacketError(f"IPv4 header truncated: {len(buf) - off} of 20 bytes", off)
    ihl = (buf[off] & 0x0F) * 4
    if ihl < 20 or len(buf) - off < ihl:
        raise PacketError(f"IPv4 IHL {ihl // 4} does not fit the frame", off)
    proto = buf[off + 9]
    first_fragment = not _H.unpack_from(buf, off + 6)[0] & 0x1FFF
    l4 = off + ihl
    # where the transport checksum is, if it covers addresses/ports we change
    csum_at = None
    if first_fragment and proto == IPPROTO_TCP and len(buf) - l4 >= 18:
        csum_at = l4 + 16
    elif first_fragment and proto == IPPROTO_UDP and len(buf) - l4 >= 8:
        csum_at = l4 + 6
        if _H.unpack_from(buf, csum_at)[0] == 0:
            csum_at = None  # "no checksum" stays none
    if fields & _L4_FIELDS and not (first_fragment and proto in (IPPROTO_TCP, IPPROTO_UDP)
                                    and len(buf) - l4 >= 8):
        raise PacketError("cannot rewrite tp_src/tp_dst: only TCP and UDP ports, in a first "
                          "fragment", l4)

    def replace16(at: int, value: int, in_l4_csum: bool) -> None:
        was = _H.unpack_from(buf, at)[0]
        _H.pack_into(buf, at, value)
        if in_l4_csum and csum_at is not None:
            csum = _adjust(_H.unpack_from(buf, csum_at)[0], was, value)
            if proto == IPPROTO_UDP and csum == 0:
                csum = 0xFFFF  # a computed 0 is sent as all ones (RFC 768)
            _H.pack_into(buf, csum_at, csum)

    for field, at in (("nw_src", off + 12), ("nw_dst", off + 16)):
        if field in fields:
            value = _need(new, field)
            replace16(at, value >> 16, True)
            replace16(at + 2, value & 0xFFFF, True)
    if "nw_tos" in fields or "nw_ecn" in fields:
        tos = buf[off + 1]
        dscp = new.get("nw_tos", tos & 0xFC) & 0xFC
        ecn = new.get("nw_ecn", tos & 0x03) & 0x03
        buf[off + 1] = dscp | ecn
    if "nw_ttl" in fields:
        buf[off + 8] = _need(new, "nw_ttl") & 0xFF
    if "tp_src" in fields:
        replace16(l4, _need(new, "tp_src"), True)
    if "tp_dst" in fields:
        replace16(l4 + 2, _need(new, "tp_dst"), True)
    _H.pack_into(buf, off + 10, 0)
    _H.pack_into(buf, off + 10, internet_checksum(bytes(buf[off : off + ihl])))
