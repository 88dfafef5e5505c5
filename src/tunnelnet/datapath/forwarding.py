"""The datapath's per-packet path: forwarding between the ports of the daemon's bridges.

For each frame a port receives: extract the flow key (tunnelnet.packet), let the bridge's
tables decide (tunnelnet.switch Bridge.process), then for each output rewrite the frame to the
output's key and send it: on a socket, into a tunnel, or across a patch port into the peer
bridge (re-entering its tables with in_port = the peer port, as Open vSwitch does, with the
metadata, registers and tunnel fields cleared).

What goes through the tables is a batch of one flow: consecutive frames of a burst whose
headers are equal in every byte the flow key is made of (coalesce.signature: a stream of UDP
datagrams, say) go through once, counted as that many packets, and each frame is then sent;
or one TCP super-frame (a Gso says how many segments it stands for). The answer and the
counters are those of the frames one by one (the flow cache makes the same replay for each).

Packets of a known flow follow its plan instead (fastpath.py). The bridges and ports are
configured by switchboard.py, which shares its tables of them with this module.

A frame too big for the tunnel it is sent into (tunnel_tx.py's one MTU check refuses it, on
the walk and on a plan alike) gets the MTU doctor's answer (packet/pmtu.py): the ICMP error is
written straight back out of the port the frame came in by, to the MAC that sent it, and an
IPv4 packet without DF goes into the tunnel as fragments. The answer does not walk the tables:
it goes to one port only, the sender's, so it can reach no one else, and it teaches no switch a
MAC where the MAC is not (a reply walked in from the tunnel port would make br-tun learn the
destination's MAC behind that tunnel even when the frame was flooded to several).
"""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from tunnelnet.datapath.bfd_monitor import BfdMonitor
from tunnelnet.datapath.errors import DatapathError
from tunnelnet.datapath.fastpath import Plan, PlanKey, PlanOutput, Plans
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PatchPort, Port, Received
from tunnelnet.datapath.ratelog import RateLimitedLog
from tunnelnet.datapath.system_port import SystemPort
from tunnelnet.datapath.tunnel import TunnelEndpoint, TunnelPort
from tunnelnet.datapath.tunnel_tx import MTU_EXCEEDED
from tunnelnet.datapath.walk_meter import WalkMeter
from tunnelnet.packet.coalesce import signature
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import FIELD_BITS, METADATA_FIELDS, FlowKey
from tunnelnet.packet.flowkey import extract_flow_key
from tunnelnet.packet.offload import Gso, SuperFrame, segment_tcp
from tunnelnet.packet.pmtu import Oversize, answer, l2_length
from tunnelnet.packet.rewrite import apply_key_changes
from tunnelnet.packet.tunnel import source_port
from tunnelnet.switch import Bridge, Output
from tunnelnet.switch.cache import CacheEntry, FlowCache

if TYPE_CHECKING:
    from tunnelnet.datapath.kernel_mirror import KernelMirror

_LAST_SEQ: Final = operator.attrgetter("last_seq")

MAX_PATCH_DEPTH: Final = 8  # patch hops one packet may take (a loop of patch pairs ends here)
# Crossing a patch port starts a fresh pipeline: Open vSwitch zeroes the metadata, registers
# and tunnel fields (patch_port_output in ofproto-dpif-xlate.c); the new in_port is the peer.
_RESET_BY_PATCH: Final[dict[str, int]] = {
    "tun_id": 0, "tun_src": 0, "tun_dst": 0, "metadata": 0, **{f"reg{i}": 0 for i in range(8)}
}
# The fields a frame's bytes carry. An output whose key equals the input's on all of them
# needs no rewrite (the common case: only metadata such as tun_id changed), and comparing
# them as one tuple is far cheaper than a field-by-field rewrite attempt.
_HEADER_FIELDS: Final = tuple(f for f in FIELD_BITS if f not in METADATA_FIELDS)

# Drop reasons the datapath adds to a bridge's own (no_flow etc. come from the switch).
BAD_PACKET: Final = "bad_packet"
OVERSIZE_RX: Final = "oversize_frame"  # a frame over the receiving interface's MTU
UNSUPPORTED_GSO: Final = "unsupported_gso"  # a super-frame neither TCP nor UDP_L4, or malformed
PATCH_PEER_MISSING: Final = "patch_peer_missing"
PATCH_LOOP: Final = "patch_loop"
NO_SUCH_PORT: Final = "output_port_missing"
REWRITE_FAILED: Final = "rewrite_failed"
WALK_LIMIT: Final = "walk_limit"  # a new flow over its ingress's walk meter (walk_meter.py)


@dataclass
class BridgeState:
    """A bridge of the daemon with what the datapath keeps beside its tables."""

    bridge: Bridge
    fail_mode: str
    ports: dict[int, Port] = field(default_factory=dict)  # ofport -> port
    drops: dict[str, int] = field(default_factory=dict)  # the datapath's reasons
    external_ids: dict[str, dict[str, str]] = field(default_factory=dict)  # port -> ids
    # packets of a known flow skip the table walk (same answer and side effects: cache.py)
    cache: FlowCache = field(init=False)

    def __post_init__(self) -> None:
        self.cache = FlowCache(self.bridge)


class Forwarder:
    """The per-packet path over ``bridges`` and ``ports`` (the switchboard's, shared: it
    changes them, this reads them), and the tunnel endpoint whose packets it forwards."""

    def __init__(self, loop: EventLoop, bridges: dict[str, BridgeState],
                 ports: dict[str, Port]) -> None:
        self.bridges = bridges
        self.ports = ports  # every port of the daemon by name (names are global)
        self.tunnels = TunnelEndpoint(loop, self._from_tunnel, self._tunnel_dropped,
                                      self._from_tunnel_lone)
        loop.after_each_round(self.tunnels.flush)
        # BFD sessions of tunnel ports: their packets leave by _send_bfd and are taken out of
        # what a tunnel receives before the tables see it
        self.bfd = BfdMonitor(loop, self._send_bfd)
        self.ratelog = RateLimitedLog()
        self.plans = Plans()
        self._unsettled: list[Plan] = []  # deferred plans with packets not yet replayed
        self._deferred_bursts = 0  # bursts that followed deferred plans (orders settling)
        self.fast_path = True  # False: every packet walks (the oracle of the plans' tests)
        # the kernel fast path (--fastpath kernel): plans it can replay are mirrored there
        self.kernel: KernelMirror | None = None
        # bounds the table walks each ingress may start: a flood of new flows from one port
        # or tenant cannot take the thread from the others (walk_meter.py)
        self.walk_meter: WalkMeter | None = WalkMeter()
        # the port and first frame of what is being forwarded now: where a frame too big for
        # its tunnel is answered (set per batch; the path below is synchronous)
        self._ingress: tuple[Port, bytes] | None = None
        # the _ingress that was last answered: a frame flooded into several tunnels, or cut
        # into segments on the way, gets one ICMP error, not one per copy
        self._answered: tuple[Port, bytes] | None = None

    def settle(self) -> None:
        """Replay what the packets that followed deferred plans did to the bridges (counters,
        MAC ages, flow timeouts). Whoever reads or changes a bridge calls this first: the
        control service on every request, housekeeping, and the walk of any packet."""
        if self._unsettled:
            plans, self._unsettled = self._unsettled, []
            # in the order of each plan's last packet: a MAC table keeps its entries in
            # last-seen order (its expiry relies on it), and a flow's last use is the latest
            plans.sort(key=_LAST_SEQ)
            for plan in plans:
                plan.settle()

    def settle_until(self, until: float) -> None:
        """``settle`` for the plans whose last packet came at ``until`` or before: the kernel
        fast path's counters of that time are replayed next, and replays go in time order
        (a flow's ``used`` and a MAC's age are those of the last replay; MAC tables keep
        last-seen order). The later plans stay for the next settle."""
        if self._unsettled:
            plans = self._unsettled
            plans.sort(key=_LAST_SEQ)  # the plans share one clock: also in order of last
            due = 0
            for plan in plans:
                if plan.last > until:
                    break
                due += 1
            self._unsettled = plans[due:]
            for plan in plans[:due]:
                plan.settle()

    def reader(self, port: Port, receive: Callable[[], list[Received]]) -> Callable[[], None]:
        """What the event loop calls when ``receive``'s descriptor of ``port`` is readable."""
        # partials, not lambdas: one Python frame fewer per burst
        if isinstance(port, SystemPort) and receive == port.receive:
            return functools.partial(self._from_system, port)  # quiet reads first
        return functools.partial(self._from_port, port, receive)

    def _from_system(self, port: SystemPort) -> None:
        """Read a system port: while its socket is quiet, the one frame there is, on the
        short way (_follow_lone); else a burst, as any port."""
        got = port.read_quiet()
        if got is None:  # busy: read_quiet has said so, receive() would ask again
            self._received(port, port.read_burst())
        elif isinstance(got, bytes):
            length = len(got)
            port.stats.rx_packets += 1
            port.stats.rx_bytes += length
            if port.max_frame and length > port.max_frame and self._oversize(port, length):
                return
            self._follow_lone(port, got, None, None, None)
        else:
            self._received(port, got)

    def _from_port(self, port: Port, receive: Callable[[], list[Received]]) -> None:
        self._received(port, receive())

    def _received(self, port: Port, frames: list[Received]) -> None:
        if not frames:
            if isinstance(port, SystemPort) and port.unsupported_gso:
                self._unsupported_gso(port)
            return
        stats = port.stats
        max_frame = port.max_frame if isinstance(port, SystemPort) else 0
        run: list[bytes] = []  # frames of one flow, to go through the tables together
        run_sig: bytes | None = None
        run_len = 0
        for frame, gso in frames:
            if gso is None:
                stats.rx_packets += 1
                stats.rx_bytes += len(frame)
                if max_frame and len(frame) > max_frame and self._oversize(port, len(frame)):
                    continue
                sig = signature(frame)
                if sig is not None and sig == run_sig and len(frame) == run_len:
                    run.append(frame)
                    continue
                if run:
                    self._input(port, run, None, None, None, None, run_sig)
                run, run_sig, run_len = [frame], sig, len(frame)
                continue
            stats.rx_packets += gso.segments
            stats.rx_bytes += gso.wire_bytes(len(frame))
            # each segment must fit the MTU the super-frame's sender had to respect
            segment = gso.header_len + gso.mss
            if max_frame and segment > max_frame and self._oversize(port, segment):
                continue
            if run:
                self._input(port, run, None, None, None, None)
                run, run_sig = [], None
            self._input(port, [frame], None, None, None, gso)
        if run:
            self._input(port, run, None, None, None, None, run_sig)
        if isinstance(port, SystemPort) and port.unsupported_gso:
            self._unsupported_gso(port)

    def _unsupported_gso(self, port: SystemPort) -> None:
        self._count(port.bridge, UNSUPPORTED_GSO, port.unsupported_gso)
        port.unsupported_gso = 0
        self.ratelog.warning(f"gso:{port.name}", "%s: dropped a super-frame we cannot cut "
                              "(%s); turn off that segmentation offload on the sender",
                              port.name, port.last_gso_error)

    def _oversize(self, port: Port, length: int) -> bool:
        """True (counted, logged) when a frame, or one segment of a super-frame, is larger
        than its interface's MTU allows."""
        if not isinstance(port, SystemPort):
            return False
        # the MTU may have been raised since we read it: look again before dropping
        if length <= port.refresh_max_frame():
            return False
        port.stats.rx_dropped += 1
        self._count(port.bridge, OVERSIZE_RX)
        self.ratelog.warning(
            f"oversize:{port.name}",
            "%s: dropped a %d-byte frame (MTU %d): larger than the interface allows (a "
            "GRO/LRO super-frame of a kind we do not take?)", port.name, length,
            port.max_frame - 18)
        return True

    def inject(self, port_name: str, frame: bytes) -> None:
        """Process ``frame`` as if port ``port_name`` had received it (tests, packet-out)."""
        port = self.ports.get(port_name)
        if port is None:
            raise DatapathError(f"no port named {port_name!r}")
        port.stats.rx_packets += 1
        port.stats.rx_bytes += len(frame)
        # not metered: an injected packet is a test's or a controller's, no port's traffic
        self._input(port, [frame], None, None, None, None, metered=False)
        self.tunnels.flush()
        self.settle()

    def _from_tunnel(self, port: TunnelPort, frames: list[bytes], tun_id: int, tun_src: int,
                     tun_dst: int, gso: Gso | None) -> None:
        if gso is None:
            port.stats.rx_packets += len(frames)
            port.stats.rx_bytes += sum(map(len, frames))
        else:
            port.stats.rx_packets += gso.segments
            port.stats.rx_bytes += gso.wire_bytes(len(frames[0]))
        if port.bfd is not None and gso is None:
            take = self.bfd.take
            frames = [frame for frame in frames if not take(port, frame, tun_id)]
            if not frames:
                return
        self._input(port, frames, tun_id, tun_src, tun_dst, gso)

    def _from_tunnel_lone(self, port: TunnelPort, frame: bytes, tun_id: int, tun_src: int,
                          tun_dst: int) -> None:
        port.stats.rx_packets += 1
        port.stats.rx_bytes += len(frame)
        if port.bfd is not None and self.bfd.take(port, frame, tun_id):
            return
        self._follow_lone(port, frame, tun_id, tun_src, tun_dst)

    def _send_bfd(self, port: TunnelPort, frame: bytes) -> None:
        """One BFD control frame into ``port``'s tunnel, sent now (a timer, not a round of
        the loop, decides when, so nothing is left queued for the round's flush)."""
        reason = self.tunnels.send(port, frame, 0)
        self.tunnels.flush()
        if reason is not None:
            self._tunnel_dropped(port, reason, 1, len(frame))

    def _follow_lone(self, port: Port, frame: bytes, tun_id: int | None, tun_src: int | None,
                     tun_dst: int | None) -> None:
        """``_input`` for one ordinary frame that came alone, as on a quiet link, where a
        hop's Python runs with cold caches after a sleep and each call and object costs
        most: a deferred plan is followed here and its frame sent at once."""
        self._ingress = (port, frame)
        sig = signature(frame) if self.fast_path else None
        if sig is not None:
            length = len(frame)
            plan = self.plans.get((port, tun_id, tun_src, tun_dst, sig, length))
            if plan is not None and plan.deferred:
                now = plan.clock()
                if plan.in_force(now):
                    self._defer(plan, 1, length, now)
                    self._send_planned(plan, [frame])
                    return
        self._input(port, [frame], tun_id, tun_src, tun_dst, None, sig)

    def _defer(self, plan: Plan, packets: int, length: int, now: float) -> None:
        """Count packets that followed a deferred plan, for settle() to replay."""
        if not plan.pending:
            self._unsettled.append(plan)
        plan.pending += packets
        plan.pending_bytes += length
        plan.last = now
        self._deferred_bursts += 1
        plan.last_seq = self._deferred_bursts
        self.plans.followed += packets

    def _input(self, port: Port, frames: list[bytes], tun_id: int | None,
               tun_src: int | None, tun_dst: int | None, gso: Gso | None,
               sig: bytes | None = None, *, metered: bool = True) -> None:
        """``frames``: one flow (see coalesce.signature), or one super-frame with its ``gso``.
        ``sig``: the frames' signature when the caller has it. ``metered``: a walk needs a
        token of the ingress's walk meter (else the frames are dropped, counted)."""
        self._ingress = (port, frames[0])
        plan_key: PlanKey | None = None
        if gso is None and self.fast_path:
            if sig is None:
                sig = signature(frames[0])
            if sig is not None:
                plan_key = (port, tun_id, tun_src, tun_dst, sig, len(frames[0]))
                plan = self.plans.get(plan_key)
                if plan is not None:
                    frames = self._follow(plan, plan_key, frames)
                    if not frames:
                        return
        if self.kernel is not None:  # and what the kernel did, where a MAC's age depends on it
            self.kernel.before_walk()
        self.settle()  # the walk must see what earlier packets did
        state = self.bridges[port.bridge]
        try:
            key = extract_flow_key(frames[0], port.ofport, tun_id, tun_src=tun_src,
                                   tun_dst=tun_dst)
        except PacketError as exc:
            port.stats.rx_errors += len(frames)
            self._count(port.bridge, BAD_PACKET, len(frames))
            self.ratelog.warning(f"bad:{port.name}", "%s: dropped a bad packet: %s",
                                  port.name, exc)
            return
        # only a real walk is metered: a flow the first bridge's cache answers (a known flow
        # that has no plan: non-IP, or dropped) costs little and is never held back
        meter = self.walk_meter
        if metered and meter is not None and not state.cache.cached(key) and not meter.allow(
                port.name, tun_id, time.monotonic()):
            dropped = len(frames) if gso is None else gso.segments
            port.stats.rx_dropped += dropped
            self._count(port.bridge, WALK_LIMIT, dropped)
            return
        self.plans.walked += len(frames) if gso is None else gso.segments
        original = dict(key)
        headers = tuple(map(original.get, _HEADER_FIELDS))
        self._pipeline(state, key, original, headers, frames, 0, gso)
        if metered and self.kernel is not None and state.cache.cached(original):
            # a known flow from now on: the kernel's port meter lets its frames up, as the
            # walk meter lets them through (a flood's frames, each learning, never get here)
            self.kernel.known_in_python(port, original)
        if plan_key is not None:
            made = self._plan(state, original, headers, frames[0])
            if made is not None:
                self.plans.put(plan_key, made)
                if self.kernel is not None:
                    self.kernel.offer(port, original, made)

    def _follow(self, plan: Plan, plan_key: PlanKey, frames: list[bytes]) -> list[bytes]:
        """Send ``frames`` as ``plan`` says while it holds; returns those it could not take
        (the caller walks them): all when the plan no longer holds, the rest of a burst when
        the first packet's replay changed a bridge (e.g. NORMAL learned a moved MAC)."""
        if plan.deferred:
            now = plan.clock()
            if not plan.in_force(now):
                self.plans.forget(plan_key)
                return frames
            self._defer(plan, len(frames), sum(map(len, frames)), now)
            self._send_planned(plan, frames)
            return []
        if not plan.holds():
            self.plans.forget(plan_key)
            return frames
        first = len(frames[0])
        plan.replay(1, first)
        if len(frames) > 1:
            if not plan.holds():
                self.plans.forget(plan_key)
                self._send_planned(plan, frames[:1])
                return frames[1:]
            plan.replay(len(frames) - 1, sum(map(len, frames)) - first)
        self.plans.followed += len(frames)
        self._send_planned(plan, frames)
        return []

    def _send_planned(self, plan: Plan, frames: list[bytes]) -> None:
        for bridge, port, tun_id, sport, encap in plan.outputs:
            if encap is not None:  # a UDP kind: onto the queue that flush() sends; IP: sent
                reason = encap.send(encap.port, encap.sport, encap.header, frames)
                if reason is not None:
                    self._refused(self.bridges[bridge], encap.port, reason, frames, tun_id,
                                  encap.sport)
            elif len(frames) == 1 and sport is None:  # a port of this host: one frame
                port.send(frames[0])
            else:
                self._send(self.bridges[bridge], port, frames, tun_id, sport)

    def _plan(self, state: BridgeState, key: FlowKey, headers: tuple[int | None, ...],
              frame: bytes) -> Plan | None:
        """The plan of the walk that ``key`` has just taken from ``state``, if every bridge
        on the way has it cached and it ends without rewrites, errors or loops."""
        stages: list[tuple[FlowCache, CacheEntry]] = []
        crossings: list[tuple[Port, Port]] = []
        outputs: list[PlanOutput] = []

        def walk(state: BridgeState, key: FlowKey, depth: int) -> bool:
            cache = state.cache
            entry = cache.entry(key)
            if entry is None or any(seen is cache for seen, _ in stages):
                return False
            stages.append((cache, entry))
            for out in entry.outputs:
                port = state.ports.get(out.port)
                if port is None:
                    return False
                if isinstance(port, PatchPort):
                    peer = self.ports.get(port.peer)
                    if not isinstance(peer, PatchPort) or peer.peer != port.name \
                            or depth >= MAX_PATCH_DEPTH:
                        return False
                    crossings.append((port, peer))
                    crossed = dict(out.key)
                    crossed.update(_RESET_BY_PATCH)
                    crossed["in_port"] = peer.ofport
                    if not walk(self.bridges[peer.bridge], crossed, depth + 1):
                        return False
                elif tuple(map(out.key.get, _HEADER_FIELDS)) != headers:
                    return False  # a rewrite: only the walk does those
                else:
                    tun_id = out.key.get("tun_id", 0)
                    sport, encap = None, None
                    if isinstance(port, TunnelPort):
                        sport = source_port(frame)
                        encap = self.tunnels.encap(port, tun_id, sport)
                    outputs.append(PlanOutput(state.bridge.name, port, tun_id, sport, encap))
            return True

        if not walk(state, key, 0):
            return None
        return Plan(tuple(stages), tuple(crossings), tuple(outputs))

    def _pipeline(self, state: BridgeState, key: FlowKey, original: FlowKey,
                  headers: tuple[int | None, ...], frames: list[bytes], depth: int,
                  gso: Gso | None = None) -> None:
        cache = state.cache
        if gso is None and len(frames) == 1:
            self._emit(state, cache.process(key, len(frames[0])), original, headers, frames,
                       depth, None)
            return
        # A batch: its first packet alone, then the others at once if that left the answer
        # cached (so they get the same one and the counters grow as for each), else one by one
        if gso is not None:
            first = gso.header_len + gso.mss
            rest_bytes, rest = gso.wire_bytes(len(frames[0])) - first, gso.segments - 1
        else:
            first = len(frames[0])
            rest_bytes, rest = sum(map(len, frames)) - first, len(frames) - 1
        outputs = cache.process(key, first)
        if cache.cached(key):
            cache.process(key, rest_bytes, rest)
            self._emit(state, outputs, original, headers, frames, depth, gso)
            return
        singles = frames if gso is None else segment_tcp(SuperFrame(frames[0], gso.mss))
        self._emit(state, outputs, original, headers, singles[:1], depth, None)
        for frame in singles[1:]:
            self._pipeline(state, key, original, headers, [frame], depth)

    def _emit(self, state: BridgeState, outputs: list[Output], original: FlowKey,
              headers: tuple[int | None, ...], frames: list[bytes], depth: int,
              gso: Gso | None) -> None:
        """Send ``frames`` (or the super-frame) to each output the tables chose."""
        for out in outputs:
            port = state.ports.get(out.port)
            if port is None:
                self._count(state.bridge.name, NO_SUCH_PORT, len(frames))
                continue
            if isinstance(port, PatchPort):
                self._cross_patch(state, port, out.key, original, headers, frames, depth, gso)
                continue
            if gso is not None:
                self._output_super(state, port, out.key, original, headers, frames[0], gso)
                continue
            try:
                data = (frames if tuple(map(out.key.get, _HEADER_FIELDS)) == headers
                        else [apply_key_changes(f, original, out.key) for f in frames])
            except PacketError as exc:
                port.stats.tx_dropped += len(frames)
                self._count(state.bridge.name, REWRITE_FAILED, len(frames))
                self.ratelog.warning(f"rewrite:{port.name}", "%s: cannot rewrite frame: %s",
                                      port.name, exc)
                continue
            self._send(state, port, data, out.key.get("tun_id", 0))

    def _send(self, state: BridgeState, port: Port, frames: list[bytes], tun_id: int,
              sport: int | None = None) -> None:
        if isinstance(port, TunnelPort):
            reason = self.tunnels.send_many(port, frames, tun_id, sport)
            if reason is not None:
                self._refused(state, port, reason, frames, tun_id, sport)
        elif len(frames) == 1:
            port.send(frames[0])
        else:
            port.send_many(frames)

    def _tunnel_dropped(self, port: TunnelPort, reason: str, packets: int, length: int
                        ) -> None:
        state = self.bridges.get(port.bridge)
        if state is not None:
            self._tunnel_drop(state, port, reason, length, packets)

    def _refused(self, state: BridgeState, port: TunnelPort, reason: str, frames: list[bytes],
                 tun_id: int, sport: int | None) -> None:
        """A send into ``port`` refused ``frames`` (one flow) for ``reason``."""
        if reason == MTU_EXCEEDED:
            self._too_big(state, port, frames, tun_id, sport)
        else:
            self._tunnel_drop(state, port, reason, len(frames[0]), len(frames))

    def _too_big(self, state: BridgeState, port: TunnelPort, frames: list[bytes], tun_id: int,
                 sport: int | None) -> None:
        """Frames of one flow too big for ``port``: the MTU doctor's answer (module doc). One
        ICMP error answers what came in as one batch (its frames share every header but the
        payload), however many tunnels or segments it became; without DF, each frame is cut
        and its fragments sent under the frame's UDP source port, so they keep the frame's
        path through the underlay."""
        ingress = self._ingress
        sender_l2 = None
        if ingress is not None:
            first = ingress[1]
            sender_l2 = first[:l2_length(first)]
        verdict = answer(frames[0], port.max_inner, sender_l2)
        what = verdict.what
        if what is Oversize.FRAGMENTED:
            if sport is None and port.udp:
                sport = source_port(frames[0])
            for index, frame in enumerate(frames):
                pieces = verdict.fragments if index == 0 else \
                    answer(frame, port.max_inner).fragments
                for piece in pieces:
                    reason = self.tunnels.send(port, piece, tun_id, sport)
                    if reason is not None:
                        self._tunnel_drop(state, port, reason, len(piece), 1)
            port.oversize[what.value] = port.oversize.get(what.value, 0) + len(frames)
            return
        if verdict.reply is not None and ingress is not None \
                and not isinstance(ingress[0], (TunnelPort, PatchPort)):
            if ingress is not self._answered:
                self._answered = ingress
                ingress[0].send(verdict.reply)
        elif verdict.reply is not None:
            # the frame came from a tunnel (a hairpin no Neutron flow makes): no one local
            # to tell, so it is a plain drop
            what = Oversize.EXCEEDED
        port.oversize[what.value] = port.oversize.get(what.value, 0) + len(frames)
        port.stats.tx_dropped += len(frames)
        self._count(state.bridge.name, what.value, len(frames))
        self.ratelog.warning(
            f"mtu:{port.name}:{what.value}",
            "%s: a %d-byte frame exceeds the %d bytes %s to %s takes whole (underlay MTU %d "
            "minus %d bytes of encapsulation): %s", port.name, len(frames[0]), port.max_inner,
            port.kind.value, port.remote_ip, port.underlay_mtu, port.overhead, verdict.why)

    def _tunnel_drop(self, state: BridgeState, port: TunnelPort, reason: str, length: int,
                     packets: int) -> None:
        port.stats.tx_dropped += packets
        self._count(state.bridge.name, reason, packets)
        if reason == MTU_EXCEEDED:  # the kernel refused it: the route's MTU shrank
            port.oversize[reason] = port.oversize.get(reason, 0) + packets
            self.ratelog.warning(
                f"mtu:{port.name}",
                "%s: dropped a %d-byte frame: with %d bytes of %s encapsulation "
                "it exceeds the underlay MTU %d towards %s (lower the VM MTU)",
                port.name, length, port.overhead, port.kind.value,
                port.underlay_mtu, port.remote_ip)

    def _output_super(self, state: BridgeState, port: Port, key: FlowKey, original: FlowKey,
                      headers: tuple[int | None, ...], frame: bytes, gso: Gso) -> None:
        """A super-frame to a port: whole when its headers stay as they are (the common
        case), else cut first and each segment rewritten and sent as an ordinary frame, since
        a rewrite may move the headers or change what the checksums cover."""
        if tuple(map(key.get, _HEADER_FIELDS)) == headers:
            if isinstance(port, TunnelPort):
                reason = self.tunnels.send_super(port, frame, gso, key.get("tun_id", 0))
                if reason == MTU_EXCEEDED:  # answered as its segments would be
                    self._too_big(state, port, segment_tcp(SuperFrame(frame, gso.mss)),
                                  key.get("tun_id", 0), source_port(frame) if port.udp else 0)
                elif reason is not None:
                    self._tunnel_drop(state, port, reason, gso.header_len + gso.mss,
                                      gso.segments)
            else:
                port.send_super(frame, gso)
            return
        try:
            segments = [apply_key_changes(s, original, key)
                        for s in segment_tcp(SuperFrame(frame, gso.mss))]
        except PacketError as exc:
            port.stats.tx_dropped += gso.segments
            self._count(state.bridge.name, REWRITE_FAILED, gso.segments)
            self.ratelog.warning(f"rewrite:{port.name}", "%s: cannot rewrite frame: %s",
                                  port.name, exc)
            return
        for segment in segments:
            if isinstance(port, TunnelPort):
                reason = self.tunnels.send(port, segment, key.get("tun_id", 0))
                if reason is not None:
                    self._refused(state, port, reason, [segment], key.get("tun_id", 0), None)
            else:
                port.send(segment)

    def _cross_patch(self, state: BridgeState, port: PatchPort, key: FlowKey,
                     original: FlowKey, headers: tuple[int | None, ...], frames: list[bytes],
                     depth: int, gso: Gso | None = None) -> None:
        peer = self.ports.get(port.peer)
        packets, length = (len(frames), sum(map(len, frames))) if gso is None else (
            gso.segments, gso.wire_bytes(len(frames[0])))
        if not isinstance(peer, PatchPort) or peer.peer != port.name:
            port.stats.tx_dropped += packets
            self._count(state.bridge.name, PATCH_PEER_MISSING, packets)
            return
        if depth >= MAX_PATCH_DEPTH:
            port.stats.tx_dropped += packets
            self._count(state.bridge.name, PATCH_LOOP, packets)
            self.ratelog.warning(f"patchloop:{port.name}",
                                  "%s: packet crossed %d patch ports; dropped as a loop",
                                  port.name, depth)
            return
        port.stats.tx_packets += packets
        port.stats.tx_bytes += length
        peer.stats.rx_packets += packets
        peer.stats.rx_bytes += length
        crossed = dict(key)
        crossed.update(_RESET_BY_PATCH)
        crossed["in_port"] = peer.ofport
        self._pipeline(self.bridges[peer.bridge], crossed, original, headers, frames,
                       depth + 1, gso)

    def _count(self, bridge: str, reason: str, packets: int = 1) -> None:
        state = self.bridges.get(bridge)
        if state is not None:
            state.drops[reason] = state.drops.get(reason, 0) + packets
