"""The NORMAL action's MAC learning table: per-VLAN, with aging and a per-VLAN cap.

Mirrors Open vSwitch's NORMAL (ofproto-dpif-xlate's xlate_normal) in the parts tunnelnet
uses: access ports carry one VLAN untagged, trunk ports carry tagged VLANs (all, or those in
their trunks list), a frame already tagged on an access port is dropped (no VLAN hopping),
sources are learned per VLAN, unknown/broadcast/multicast destinations flood within the VLAN
and never back out of the input port. The cap per VLAN keeps one tenant's MAC flood from
evicting others' entries; hits are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tunnelnet.packet.fields import VLAN_CFI, int_to_mac

if TYPE_CHECKING:
    from tunnelnet.switch.xlate import Xlate

DEFAULT_AGING: Final = 300.0  # seconds, Open vSwitch's default mac-aging-time
DEFAULT_LIMIT_PER_VLAN: Final = 4096
_MULTICAST_BIT: Final = 1 << 40
_RESERVED_MCAST: Final = 0x0180C2000000  # 01:80:c2:00:00:0x - link-local protocols (STP, LACP)


@dataclass(slots=True)
class MacEntry:
    port: int
    seen: float


class MacTable:
    def __init__(
        self, aging: float = DEFAULT_AGING, limit_per_vlan: int = DEFAULT_LIMIT_PER_VLAN
    ) -> None:
        self.aging = aging
        self.limit_per_vlan = limit_per_vlan
        self._entries: dict[tuple[int, int], MacEntry] = {}
        self._per_vlan: dict[int, int] = {}
        self.limit_hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, vlan: int, mac: int, now: float) -> int | None:
        entry = self._entries.get((vlan, mac))
        if entry is None or now - entry.seen >= self.aging:
            return None
        return entry.port

    def expires(self, vlan: int, mac: int) -> float | None:
        """When ``lookup`` stops finding this MAC unless it is seen again (None: unknown)."""
        entry = self._entries.get((vlan, mac))
        return None if entry is None else entry.seen + self.aging

    def learn(self, vlan: int, mac: int, port: int, now: float) -> str:
        """Returns 'learned', 'moved', 'refreshed' or 'limit' (not learned: VLAN is full).

        ``now`` may be older than the MAC's last sighting: the kernel fast path folds the
        packets it forwarded as of their last use, after walks that came later
        (kernel_mirror.py). The later sighting stands, as if each packet had walked in turn:
        the MAC stays where it was seen last, no younger and no older."""
        key = (vlan, mac)
        entries = self._entries
        entry = entries.get(key)
        if entry is not None and now - entry.seen < self.aging:
            if now < entry.seen:
                return "refreshed"
            # re-insert so the dict stays in last-seen order (oldest first) for expire()
            del entries[key]
            self._append(key, entry, now)
            entry.seen = now
            if entry.port != port:
                entry.port = port
                return "moved"
            return "refreshed"
        if entry is None:
            if self._per_vlan.get(vlan, 0) >= self.limit_per_vlan:
                self.limit_hits += 1
                return "limit"
            self._per_vlan[vlan] = self._per_vlan.get(vlan, 0) + 1
        else:
            del entries[key]
        self._append(key, MacEntry(port, now), now)
        return "learned"

    def _append(self, key: tuple[int, int], entry: MacEntry, seen: float) -> None:
        """Put ``entry`` (seen at ``seen``) in its place in the last-seen order: the end,
        unless a late fold's sighting is older than the newest entries (then before them)."""
        entries = self._entries
        if not entries or next(reversed(entries.values())).seen <= seen:
            entries[key] = entry
            return
        newer = []
        for other in reversed(entries):
            if entries[other].seen <= seen:
                break
            newer.append(other)
        moved = [(other, entries.pop(other)) for other in reversed(newer)]
        entries[key] = entry
        entries.update(moved)

    def expire(self, now: float) -> int:
        # entries are in last-seen order, so the stale ones are a prefix
        stale = []
        for k, e in self._entries.items():
            if now - e.seen < self.aging:
                break
            stale.append(k)
        for key in stale:
            del self._entries[key]
            left = self._per_vlan[key[0]] - 1
            if left:
                self._per_vlan[key[0]] = left
            else:
                del self._per_vlan[key[0]]
        return len(stale)

    def flush_port(self, port: int) -> None:
        for key, entry in list(self._entries.items()):
            if entry.port == port:
                del self._entries[key]
                self._per_vlan[key[0]] -= 1
                if not self._per_vlan[key[0]]:
                    del self._per_vlan[key[0]]

    def per_vlan(self) -> dict[int, int]:
        """Entries held per VLAN (aged ones included until the next ``expire``): what the cap
        is checked against."""
        return dict(self._per_vlan)

    def entries(self) -> list[tuple[int, int, int, float]]:
        """(vlan, mac, port, last seen) for ovs-appctl fdb/show style listings."""
        return [(v, m, e.port, e.seen) for (v, m), e in self._entries.items()]


def normal_forward(x: Xlate) -> None:
    """The NORMAL action for the packet being translated by ``x``."""
    bridge = x.bridge
    key = x.key
    in_port = key["in_port"]
    cfg = bridge.port_by_number.get(in_port)
    if cfg is None:
        x.warn(f"no input port {in_port} on bridge, dropping")
        x.note_drop("normal_no_in_port")
        return
    tci = key.get("vlan_tci", 0)
    tagged = bool(tci & VLAN_CFI)
    vid = tci & 0x0FFF
    if cfg.tag is not None:
        if tagged and vid:
            x.error_note(
                f"dropping VLAN {vid} tagged packet received on port {cfg.name} "
                f"configured as VLAN {cfg.tag} access port"
            )
            x.warn("disallowed VLAN VID for this input port, dropping")
            x.note_drop("vlan_tagged_on_access_port")
            return
        vlan = cfg.tag
    else:
        vlan = vid if tagged else 0
        if cfg.trunks and vlan not in cfg.trunks:
            x.error_note(
                f"dropping VLAN {vlan} packet received on port {cfg.name} "
                f"not configured for trunking VLAN {vlan}"
            )
            x.warn("disallowed VLAN VID for this input port, dropping")
            x.note_drop("vlan_not_on_trunk")
            return
    dst = key.get("dl_dst", 0)
    if dst & ~0xF == _RESERVED_MCAST:
        x.warn("packets to reserved multicast addresses are not forwarded")
        x.note_drop("reserved_multicast")
        return
    src = key.get("dl_src", 0)
    if x.side_effects and not src & _MULTICAST_BIT:
        result = bridge.mac_table.learn(vlan, src, in_port, x.now)
        if result in ("learned", "moved"):
            # NORMAL's forwarding changed for this MAC in this VLAN: caches in front drop
            # what depended on it (changes.py)
            bridge.changes.mac(vlan, src)
            x.detail(f"learned that {int_to_mac(src)} is on port {cfg.name} in VLAN {vlan}")
    pcp = (tci >> 13) if tagged else 0
    if dst & _MULTICAST_BIT:
        x.detail("no learned MAC for destination, flooding")
        _flood(x, vlan, pcp, in_port)
        return
    port = bridge.mac_table.lookup(vlan, dst, x.now)
    if port is None:
        x.detail("no learned MAC for destination, flooding")
        _flood(x, vlan, pcp, in_port)
    elif port == in_port:
        x.detail("learned port is input port, dropping")
        x.note_drop("normal_learned_in_port")
    else:
        x.detail("forwarding to learned port")
        out = bridge.port_by_number.get(port)
        if out is not None:
            _output(x, out.ofport, out.tag, vlan, pcp)


def _flood(x: Xlate, vlan: int, pcp: int, in_port: int) -> None:
    for cfg in x.bridge.port_list:
        if cfg.ofport == in_port or cfg.no_flood:
            continue
        if cfg.tag is not None:
            if cfg.tag != vlan:
                continue
        elif cfg.trunks and vlan not in cfg.trunks:
            continue
        _output(x, cfg.ofport, cfg.tag, vlan, pcp)


def _output(x: Xlate, port: int, tag: int | None, vlan: int, pcp: int) -> None:
    out_key = dict(x.key)
    if tag is not None or vlan == 0:
        # the outer tag goes; an inner one (QinQ) stays in the frame and becomes the outer
        out_key["vlan_tci"] = out_key.pop("vlan_tci1", 0)
    else:
        out_key["vlan_tci"] = VLAN_CFI | vlan | (pcp << 13)
    x.emit_owned(port, out_key)
