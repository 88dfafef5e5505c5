"""A bridge: ports, up to 255 flow tables, NORMAL's MAC table, and the packet pipeline.

No I/O here. The datapath hands ``process`` a flow key and gets back where copies go; the
agent and the CLI drive it with ``ovs-ofctl``-style flow text; ``trace`` explains a packet's
walk without changing anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from tunnelnet.packet.fields import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    VLAN_CFI,
    VLAN_PCP_SHIFT,
    VLAN_VID_MASK,
    FlowKey,
    int_to_mac,
)
from tunnelnet.switch.actions import OutputPort
from tunnelnet.switch.changes import Changes
from tunnelnet.switch.classifier import Classifier
from tunnelnet.switch.errors import FlowSyntaxError, SwitchError
from tunnelnet.switch.explain import explain_step, summarize
from tunnelnet.switch.flow import FlowEntry
from tunnelnet.switch.flow_format import format_flow, format_key
from tunnelnet.switch.flow_parser import FlowCommand, FlowSpec, parse_flow, tokens
from tunnelnet.switch.learn import LearnedFlow
from tunnelnet.switch.match import IPPROTO_SCTP, KEY_DEFAULTS, Match, full_mask
from tunnelnet.switch.match_parser import parse_int, parse_match
from tunnelnet.switch.normal import DEFAULT_AGING, DEFAULT_LIMIT_PER_VLAN, MacTable
from tunnelnet.switch.pipeline import Pipeline
from tunnelnet.switch.ports import OFPP_MAX, format_port
from tunnelnet.switch.timeouts import FlowTimers
from tunnelnet.switch.trace import TableWalk, Trace, TraceStep
from tunnelnet.switch.xlate import Output, Xlate

log = logging.getLogger(__name__)

N_TABLES = 255
DEFAULT_LEARN_LIMIT_PER_VLAN = 8192


@dataclass(frozen=True, slots=True)
class PortConfig:
    name: str
    ofport: int
    tag: int | None = None  # access port on this VLAN (NORMAL)
    trunks: tuple[int, ...] = ()  # trunk port for these VLANs; () = all VLANs
    no_flood: bool = False


def _learn_slot(table: int, match: Match) -> tuple[int, int | None]:
    """Learned flows are capped per table and VLAN (the VID bits a learned match carries)."""
    vlan = match.get("vlan_tci")
    return (table, vlan[0] & 0x0FFF if vlan is not None else None)


class FlowTable:
    __slots__ = ("classifier", "n_lookups", "n_matched", "table_id")

    def __init__(self, table_id: int) -> None:
        self.table_id = table_id
        self.classifier = Classifier()
        self.n_lookups = 0
        self.n_matched = 0


_SECOND_VLAN_SLOT = {"dl_vlan1": 12, "dl_vlan_pcp1": 3, "vlan_tci1": 16}  # name -> bits


class Bridge:
    def __init__(
        self,
        name: str,
        *,
        fail_mode: Literal["standalone", "secure"] | str = "standalone",
        clock: Callable[[], float] = time.monotonic,
        pipeline: Pipeline | None = None,
        mac_aging: float = DEFAULT_AGING,
        mac_limit_per_vlan: int = DEFAULT_LIMIT_PER_VLAN,
        learn_limit_per_vlan: int = DEFAULT_LEARN_LIMIT_PER_VLAN,
    ) -> None:
        if fail_mode not in ("standalone", "secure"):
            raise SwitchError(f"fail_mode {fail_mode!r}: must be 'standalone' or 'secure'")
        self.name = name
        self.fail_mode = fail_mode
        self.pipeline = pipeline
        self._clock = clock
        self.tables: dict[int, FlowTable] = {}
        self.port_by_number: dict[int, PortConfig] = {}
        self._port_by_name: dict[str, PortConfig] = {}
        self.port_list: list[PortConfig] = []
        self.port_numbers: frozenset[int] = frozenset()
        self.mac_table = MacTable(mac_aging, mac_limit_per_vlan)
        self.drops: dict[str, int] = {}
        self.drops_by_table: dict[int, int] = {}  # table whose flow (or miss) dropped it
        # learn() caps: flows learned per (table, VLAN); hits counted (docs/architecture.md "Safe by
        # default": one tenant's MAC flood must not fill table 20 for everybody)
        self.learn_limit_per_vlan = learn_limit_per_vlan
        self.learn_limit_hits = 0
        self._learned_count: dict[tuple[int, int | None], int] = {}
        self.version = 0  # bumped on every flow-table change (for caches in front of us)
        # what learning changed (new or moved MACs, learned flows), told apart so that caches
        # in front drop only what depended on it (changes.py); version stays for the rest
        self.changes = Changes()
        self._seq = 0
        self._timers = FlowTimers()
        if fail_mode == "standalone":
            # Open vSwitch gives a new bridge this flow, so it starts as a learning switch.
            self.add_flow("priority=0 actions=NORMAL")

    # --- ports ------------------------------------------------------------------------------

    def add_port(
        self,
        name: str,
        ofport: int | None = None,
        *,
        tag: int | None = None,
        trunks: Sequence[int] = (),
        no_flood: bool = False,
    ) -> int:
        if not name:
            raise SwitchError("port name must not be empty")
        if name in self._port_by_name:
            raise SwitchError(f"port {name!r} already exists on bridge {self.name}")
        if ofport is None:
            ofport = 1
            while ofport in self.port_by_number:
                ofport += 1
        if not 1 <= ofport < OFPP_MAX and ofport != 0xFFFE:
            raise SwitchError(f"port {name!r}: ofport {ofport} out of range 1..{OFPP_MAX - 1}")
        if ofport in self.port_by_number:
            other = self.port_by_number[ofport].name
            raise SwitchError(f"port {name!r}: ofport {ofport} is already used by {other!r}")
        if tag is not None and not 0 <= tag <= 4095:
            raise SwitchError(f"port {name!r}: tag {tag} must be 0..4095")
        if tag is not None and trunks:
            raise SwitchError(f"port {name!r}: a port is either access (tag) or trunk, not both")
        for vlan in trunks:
            if not 0 <= vlan <= 4095:
                raise SwitchError(f"port {name!r}: trunk VLAN {vlan} must be 0..4095")
        cfg = PortConfig(name, ofport, tag, tuple(sorted(set(trunks))), no_flood)
        self._port_by_name[name] = cfg
        self.port_by_number[ofport] = cfg
        self._ports_changed()
        return ofport

    def del_port(self, name: str) -> None:
        cfg = self._port_by_name.pop(name, None)
        if cfg is None:
            raise SwitchError(f"no port {name!r} on bridge {self.name}")
        del self.port_by_number[cfg.ofport]
        self.mac_table.flush_port(cfg.ofport)
        self._ports_changed()

    def _ports_changed(self) -> None:
        self.port_list = sorted(self.port_by_number.values(), key=lambda p: p.ofport)
        self.port_numbers = frozenset(self.port_by_number)
        self.version += 1

    def port(self, name_or_ofport: str | int) -> PortConfig:
        if isinstance(name_or_ofport, int):
            cfg = self.port_by_number.get(name_or_ofport)
        else:
            cfg = self._port_by_name.get(name_or_ofport)
        if cfg is None:
            raise SwitchError(f"no port {name_or_ofport!r} on bridge {self.name}")
        return cfg

    def ports(self) -> list[PortConfig]:
        return list(self.port_list)

    def _resolve(self, name: str) -> int | None:
        cfg = self._port_by_name.get(name)
        return cfg.ofport if cfg else None

    def _port_name(self, ofport: int) -> str:
        cfg = self.port_by_number.get(ofport)
        return cfg.name if cfg else ""

    # --- flow mods --------------------------------------------------------------------------

    def _parse(
        self, text: str, command: FlowCommand, strict: bool = False, protocol: str | None = None
    ) -> FlowSpec:
        return parse_flow(text, command, strict=strict, resolve=self._resolve, protocol=protocol)

    def _table(self, table_id: int) -> FlowTable:
        table = self.tables.get(table_id)
        if table is None:
            table = self.tables[table_id] = FlowTable(table_id)
        return table

    def _install(
        self,
        table_id: int,
        priority: int,
        match: Match,
        actions: tuple[object, ...],
        *,
        cookie: int,
        idle: int,
        hard: int,
        learned: bool = False,
    ) -> FlowEntry:
        now = self._clock()
        table = self._table(table_id)
        old = table.classifier.find_exact(match, priority)
        if old is not None:
            # Same match and priority: Open vSwitch replaces the flow, carrying its counters
            # and idle age over (no reset_counts) but restarting its duration; a learn() that
            # re-learns the same flow only refreshes it (hard_timeout restarts from now).
            same_actions = old.actions == actions
            if not (learned and same_actions):
                old.created = now
            old.actions = actions  # type: ignore[assignment]
            old.cookie = cookie
            old.idle_timeout = idle
            old.hard_timeout = hard
            old.modified = now
            self._track(old)
            if not same_actions:
                # forwarding changed; a refresh (re-learning the same flow on every packet
                # from a tunnel) must not invalidate caches in front of the tables
                if learned:
                    self.changes.flow(table_id, match)  # only lookups it matches change
                else:
                    self.version += 1
            return old
        self._seq += 1
        entry = FlowEntry(
            table=table_id,
            priority=priority,
            match=match,
            actions=actions,  # type: ignore[arg-type]
            cookie=cookie,
            idle_timeout=idle,
            hard_timeout=hard,
            created=now,
            modified=now,
            used=now,
            seq=self._seq,
            learned=learned,
        )
        table.classifier.insert(entry)
        self._track(entry)
        if learned:
            # a learned flow changes only the lookups of keys it matches: a MAC flood's
            # learning must not drop every other tenant's cached flows (changes.py)
            self.changes.flow(table_id, match)
        else:
            self.version += 1
        return entry

    def _track(self, entry: FlowEntry) -> None:
        self._timers.schedule(entry)

    def _remove(self, entry: FlowEntry) -> None:
        if entry.learned:
            slot = _learn_slot(entry.table, entry.match)
            left = self._learned_count.get(slot, 0) - 1
            if left > 0:
                self._learned_count[slot] = left
            else:
                self._learned_count.pop(slot, None)
        self.tables[entry.table].classifier.remove(entry)
        self._timers.forget(entry)
        self.version += 1

    def _add_spec(self, spec: FlowSpec) -> None:
        assert spec.actions is not None and spec.table is not None
        self._install(
            spec.table,
            spec.priority,
            spec.match,
            spec.actions,
            cookie=spec.new_cookie or 0,
            idle=spec.idle_timeout,
            hard=spec.hard_timeout,
        )

    def add_flow(self, text: str, *, protocol: str | None = None) -> None:
        """``protocol``: as ``ovs-ofctl -O``; None picks what the flow needs (OpenFlow 1.0
        unless it has push_vlan or goto_table, see action_parser.OPENFLOW11_ONLY)."""
        self._add_spec(self._parse(text, FlowCommand.ADD, protocol=protocol))

    def add_flows(self, lines: Iterable[str], *, protocol: str | None = None,
                  known: Mapping[str, FlowSpec] | None = None) -> int:
        """All or nothing: every line is parsed before any is installed. A line ``known``
        holds is taken as parsed already (a restart's snapshot: parsed_flows.py)."""
        specs: list[FlowSpec] = []
        known = known or {}
        for number, line in enumerate(lines, 1):
            spec = known.get(line)
            if spec is not None:
                specs.append(spec)
                continue
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                specs.append(self._parse(text, FlowCommand.ADD, protocol=protocol))
            except FlowSyntaxError as exc:
                raise FlowSyntaxError(f"line {number}: {exc}") from None
        for spec in specs:
            self._add_spec(spec)
        return len(specs)

    def _select(self, spec: FlowSpec) -> list[FlowEntry]:
        if spec.table is None:
            tables = [self.tables[t] for t in sorted(self.tables)]
        else:
            tables = [self.tables[spec.table]] if spec.table in self.tables else []
        found: list[FlowEntry] = []
        for table in tables:
            if spec.strict:
                entry = table.classifier.find_exact(spec.match, spec.priority)
                candidates = [entry] if entry is not None else []
            else:
                candidates = [e for e in table.classifier if e.match.is_subset_of(spec.match)]
            for entry in candidates:
                if spec.cookie_mask and (entry.cookie & spec.cookie_mask) != spec.cookie:
                    continue
                if spec.out_port is not None and not any(
                    isinstance(a, OutputPort) and a.port == spec.out_port for a in entry.actions
                ):
                    continue
                found.append(entry)
        found.sort(key=lambda e: (e.table, -e.priority, e.seq))
        return found

    def mod_flows(self, text: str, *, strict: bool = False, protocol: str | None = None) -> int:
        """Replace the actions of the selected flows (counters kept). As Open vSwitch does,
        a mod that selects nothing adds the flow, unless it filters on a cookie."""
        spec = self._parse(text, FlowCommand.MODIFY, strict, protocol)
        assert spec.actions is not None
        selected = self._select(spec)
        if not selected:
            if spec.cookie_mask:
                return 0
            table = 0 if spec.table is None else spec.table
            self._install(
                table,
                spec.priority,
                spec.match,
                spec.actions,
                cookie=spec.new_cookie or 0,
                idle=spec.idle_timeout,
                hard=spec.hard_timeout,
            )
            return 1
        for entry in selected:
            entry.actions = spec.actions
            if not spec.cookie_mask:
                # ovs-ofctl's OpenFlow 1.0 flow_mod carries the new cookie, 0 when none is
                # given; only a cookie filter (cookie=X/M) leaves the cookie as it was
                entry.cookie = spec.new_cookie or 0
        self.version += 1
        return len(selected)

    def del_flows(self, text: str = "", *, strict: bool = False) -> int:
        spec = self._parse(text, FlowCommand.DELETE, strict)
        selected = self._select(spec)
        for entry in selected:
            self._remove(entry)
        return len(selected)

    def flows(self, filter_text: str = "") -> list[FlowEntry]:
        """The flow entries dump_flows prints, in its order (table, then priority high->low)."""
        return self._select(self._parse(filter_text, FlowCommand.DUMP))

    def dump_flows(self, filter_text: str = "", *, stats: bool = True) -> list[str]:
        """Lines as ``ovs-ofctl [--no-stats] dump-flows`` prints them (without the leading
        space ovs-ofctl puts before each line)."""
        now = self._clock()
        return [format_flow(e, stats=stats, now=now) for e in self.flows(filter_text)]

    # --- packets ----------------------------------------------------------------------------

    def process(self, key: FlowKey, length: int) -> list[Output]:
        k = {**KEY_DEFAULTS, **key}
        x = Xlate(self, k, self._clock(), True, False)
        x._length = length
        x.run_table(0)
        for flow in x.learned:
            self.install_learned(flow)
        if x.error is not None:
            self.drops[x.error] = self.drops.get(x.error, 0) + 1
            return []
        if not x.outputs:
            reason = x.drop_reason or "no_output"
            self.drops[reason] = self.drops.get(reason, 0) + 1
            if x.drop_table is not None:
                self.drops_by_table[x.drop_table] = self.drops_by_table.get(x.drop_table, 0) + 1
        return x.outputs

    # --- hooks for the flow cache (switch/cache.py), which replays walks without an Xlate ---

    @property
    def clock(self) -> Callable[[], float]:
        """The clock the bridge's flow ages, timeouts and MAC ages are read from."""
        return self._clock

    def relearn(self, flow: FlowEntry, now: float) -> None:
        """What installing a learned flow that is there, with equal actions, amounts to (as
        _install does it): its hard timeout restarts at ``now`` (never earlier than it did:
        a kernel fold replays as of a last use that may precede a walk since)."""
        if now > flow.modified:
            flow.modified = now
            self._timers.schedule(flow)

    def install_learned(self, flow: LearnedFlow) -> None:
        """Install what a learn() action made (the walk's, or the flow cache's replay of
        one), within the per-VLAN learn limit."""
        match = Match.of(flow.constraints)
        table = self.tables.get(flow.table)
        if table is None or table.classifier.find_exact(match, flow.priority) is None:
            slot = _learn_slot(flow.table, match)
            if self._learned_count.get(slot, 0) >= self.learn_limit_per_vlan:
                self.learn_limit_hits += 1
                return
            self._learned_count[slot] = self._learned_count.get(slot, 0) + 1
        self._install(
            flow.table,
            flow.priority,
            match,
            flow.actions,
            cookie=flow.cookie,
            idle=flow.idle_timeout,
            hard=flow.hard_timeout,
            learned=True,
        )

    def expire(self) -> int:
        """Remove flows whose idle or hard timeout has passed and age out MAC entries.
        Returns the number of flows removed. The datapath calls this about once a second."""
        now = self._clock()
        gone = self._timers.due(now)
        debug = log.isEnabledFor(logging.DEBUG)
        for entry in gone:
            if debug:
                log.debug("bridge %s: flow expired: %s", self.name, entry.match.format())
            self._remove(entry)
        if self.mac_table.expire(now):
            self.version += 1
        return len(gone)

    def learned_per_vlan(self) -> dict[tuple[int, int | None], int]:
        """Flows learn() installed, per (table, VLAN): what ``learn_limit_per_vlan`` caps."""
        return dict(self._learned_count)

    def fdb_show(self) -> list[str]:
        """NORMAL's MAC table as ``ovs-appctl fdb/show`` prints it (header line first)."""
        now = self._clock()
        lines = [" port  VLAN  MAC                Age"]
        for vlan, mac, port, seen in sorted(self.mac_table.entries(), key=lambda e: e[3]):
            age = int(now - seen)
            if age >= self.mac_table.aging:
                continue
            lines.append(f"{format_port(port):>5}  {vlan:4d}  {int_to_mac(mac)}  {age:3d}")
        return lines

    # --- trace ------------------------------------------------------------------------------

    def trace(self, flow_text: str, *, generate: bool = False) -> Trace:
        """ofproto/trace of one packet. Changes nothing unless ``generate`` (OVS's -generate):
        then the packet counts, learns (NORMAL and learn()) and is dropped-counted like one
        that really arrived."""
        key = self.trace_key(flow_text)
        flow = format_key(key)
        x = Xlate(self, dict(key), self._clock(), generate, True)
        x.run_table(0)
        assert x.nodes is not None and x.steps is not None
        for learned in x.learned:
            self.install_learned(learned)
        if generate and (x.error or not x.outputs):
            counted = x.error or x.drop_reason or "no_output"
            self.drops[counted] = self.drops.get(counted, 0) + 1
        steps = [
            TraceStep(
                table=s.table,
                priority=s.priority,
                match=s.match,
                actions=s.actions,
                depth=s.depth,
                cookie=s.cookie,
                note=explain_step(s, self.pipeline, self._port_name),
            )
            for s in x.steps
        ]
        outputs = [] if x.error else [o.port for o in x.outputs]
        drop = not outputs
        reason = x.error or (x.drop_reason if drop else None) or ("no_output" if drop else None)
        return Trace(
            flow=flow,
            steps=steps,
            final_flow=format_key(x.key),
            outputs=outputs,
            drop=drop,
            bridge=self.name,
            nodes=x.nodes,
            drop_reason=reason,
            summary=summarize(outputs, drop, reason, self._port_name),
        )

    def table_walk(self, flow_text: str, key: FlowKey | None = None) -> TableWalk:
        """``trace`` (without ``generate``: it changes nothing) as data: the steps as the
        walk records them, the outputs and why it dropped, without the ofproto/trace tree
        or the steps' plain words, which only a reader of the trace needs. ``key``: the
        flow key ``trace_key(flow_text)`` gives, when the caller has it already (a walk
        across bridges goes on from one bridge's final key): the text is then neither
        parsed nor printed again (``flow`` is ``flow_text`` as given)."""
        # given the key, the caller has the text too: not printed again
        if key is None:
            key = self.trace_key(flow_text)
            flow = format_key(key)
        else:
            flow = flow_text
        x = Xlate(self, dict(key), self._clock(), False, True)
        x.nodes = None  # steps only
        x.run_table(0)
        assert x.steps is not None
        outputs = [] if x.error else [o.port for o in x.outputs]
        drop = not outputs
        reason = x.error or (x.drop_reason if drop else None) or ("no_output" if drop else None)
        return TableWalk(
            flow=flow,
            steps=x.steps,
            final_key=x.key,
            outputs=outputs,
            drop=drop,
            drop_reason=reason,
            note=lambda step: explain_step(step, self.pipeline, self._port_name),
        )

    def trace_key(self, flow_text: str) -> FlowKey:
        """The flow key ``trace`` uses for ofproto/trace-style text: given fields exact,
        the rest of the headers the packet type implies set to 0, as Open vSwitch does."""
        # The second VLAN slot our own Flow lines print (QinQ, as OVS prints it) is read back,
        # so a trace's final flow can be traced on (OVS's flow syntax has no such field).
        inner: dict[str, int] = {}
        kept = []
        for token, text in tokens(flow_text):
            if token in _SECOND_VLAN_SLOT and text is not None:
                # read as every other field is (a bad value is a FlowSyntaxError naming it;
                # int() raised ValueError, which the control socket answered as a bug)
                inner[token] = parse_int(text, _SECOND_VLAN_SLOT[token], token)
            else:
                kept.append((token, text))
        match = parse_match(kept, self._resolve)
        key: FlowKey = dict(KEY_DEFAULTS)
        key.update({"in_port": 0, "dl_src": 0, "dl_dst": 0, "dl_type": 0})
        dl_type = match.value("dl_type")
        proto = match.value("nw_proto")
        extra: tuple[str, ...] = ()
        if dl_type == ETH_TYPE_IPV4:
            extra = ("nw_src", "nw_dst", "nw_proto", "nw_tos", "nw_ecn", "nw_ttl")
        elif dl_type == ETH_TYPE_IPV6:
            extra = ("ipv6_src", "ipv6_dst", "nw_proto", "nw_tos", "nw_ecn", "nw_ttl")
        elif dl_type == ETH_TYPE_ARP:
            extra = ("arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha")
        l4 = (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMP, IPPROTO_ICMPV6)
        if dl_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6) and proto in l4:
            extra += ("tp_src", "tp_dst")
        for name in extra:
            key[name] = 0
        for name, value, mask in match.fields:
            if mask != full_mask(name) and not (name == "vlan_tci" and mask in (0x1FFF, 0xF000)):
                raise FlowSyntaxError(f"{name}: a traced flow takes exact values, not masks")
            key[name] = value
        if "dl_vlan1" in inner and key["vlan_tci"] & VLAN_CFI:
            key["vlan_tci1"] = (VLAN_CFI | (inner["dl_vlan1"] & VLAN_VID_MASK)
                                | (inner.get("dl_vlan_pcp1", 0) & 7) << VLAN_PCP_SHIFT)
        return key
