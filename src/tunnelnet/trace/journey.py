"""Walk one packet from VM1's vNIC through every bridge it meets, asking each running switch.

At each bridge the switch's own trace (``ofproto/trace``'s lookup, no side effects) says which
flows match and where copies go. A patch port hands the frame to the peer bridge on the same
host; a tunnel port encapsulates it towards the hypervisor whose underlay address is the
port's remote_ip, where it enters that host's br-tun on the tunnel port pointing back; the
uplink of a physical bridge (br-eth1, for VLAN and flat networks) leads onto the lab's physical
switch, which carries the configured VLANs to the other hypervisors' uplinks. A vNIC ends the
walk. The only knowledge added here is Open vSwitch's port semantics (NORMAL tags a frame from
an access port with the port's VLAN on trunk ports and untags it on access ports), which the
switch's trace does not spell out per output, and what the switches learn from the frames of
the exchange itself (:mod:`tunnelnet.trace.learning`): an ICMP echo is walked after the ARP
request and reply that precede it, and its reply after it.

This is the one walker: ``tunnelnet trace`` (and its alias ``lab sim-trace``), the web page's
trace and the simulated lab's ``ping``/``verify`` (:func:`ping_verdict`) all walk with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, Final

from tunnelnet.lab import names
from tunnelnet.packet import pmtu, tunnel_kinds
from tunnelnet.packet.fields import ETH_TYPE_ARP, VLAN_CFI, FlowKey, int_to_mac
from tunnelnet.packet.tunnel import overhead, source_port
from tunnelnet.switch import crossing
from tunnelnet.switch.pipeline import TunTable
from tunnelnet.trace import explain, flowtext
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.learning import PHYSICAL_SWITCH, UNDERLAY, Learned, is_unicast
from tunnelnet.trace.model import Encap, End, Exit, Journey, Outcome, Step, Visit
from tunnelnet.trace.probe import (
    BROADCAST,
    Probe,
    arp_reply,
    arp_request,
    build,
    echo_reply,
    forged,
)
from tunnelnet.trace.view import LabView, PortInfo, VmInfo

if TYPE_CHECKING:
    from tunnelnet.switch.trace import TableWalk

PHYSICAL_BRIDGES: Final = (names.physical_bridge(),)  # as the lab names them (br-eth1)
BRIDGES: Final = ("br-int", "br-tun", *PHYSICAL_BRIDGES)
# a flood across a big lab stays bounded, a loop cannot run away; a broadcast visits two
# bridges per hypervisor (three with a physical network), so the bound grows with the lab
MIN_VISITS: Final = 64


@dataclass(slots=True)
class Walk:
    """One frame's walk: the bridges it visited, its encapsulations, where its copies ended."""

    visits: list[Visit]
    encaps: list[Encap]
    ends: list[End]
    answered_sha: str = ""  # the MAC br-tun's ARP responder answered with

    def reached(self, vm: str) -> bool:
        return any(e.what == "delivered" and e.vm == vm and not e.hypothetical
                   for e in self.ends)


@dataclass(frozen=True, slots=True)
class _BridgePort:
    """A port and the bridge it is on (a journey's ports are listed per bridge)."""

    bridge: str
    port: PortInfo

    @property
    def name(self) -> str:
        return self.port.name

    @property
    def type(self) -> str:
        return self.port.type

    @property
    def options(self) -> dict[str, str]:
        return self.port.options


@dataclass(slots=True)
class _Pending:
    host: str
    bridge: str
    in_port: str
    flow: str
    parent: int | None
    frame: bytes  # the frame as it enters (untagged bytes; VLANs live in the flow text)
    # the flow's key as the bridge would read ``flow`` (None: it reads the text), handed on
    # from the previous bridge's table walk in verdict mode
    key: FlowKey | None = None


class Walker:
    def __init__(self, lab: LabView, physical_vlans: frozenset[int] | None = None) -> None:
        self.lab = lab
        self.vms = lab.vms()
        self.vm_at = {(v.hypervisor, v.tap): v for v in self.vms.values()}  # behind a vNIC
        self.networks = lab.networks()
        self.hv_ips = lab.hypervisors()
        # the physical switch's configuration: the VLANs its hypervisor ports carry (as the
        # lab's vlan_filtering sets them), untagged frames always
        self.physical_vlans = physical_vlans if physical_vlans is not None else frozenset(
            n.segment for n in self.networks.values()
            if n.type == "vlan" and n.segment is not None)
        self.max_visits = max(MIN_VISITS, 4 * len(self.hv_ips) + 16)
        self._ports: dict[tuple[str, str], list[PortInfo]] = {}
        self._local_vlans: dict[str, dict[int, str]] = {}
        self.learned = Learned()
        # off for a what-if visit (a frame that never was teaches nothing) and for a frame
        # walked alone
        self.learning = True
        # plain words for the packet's own visits; the exchange's other frames are summed up
        # in a line each, so their words would be work nobody reads
        self.explaining = True
        # only the verdict is wanted (a ping's: reached or not, and why not): no plain words,
        # and the switches asked for their table walk as data where they can give it
        self.verdict = False
        # the visited bridge's final flow key, while its exits are followed (verdict mode)
        self._final_key: FlowKey | None = None
        self._unlearned: list[tuple[Visit, tuple[str, str, int | None, str]]] = []

    def vm(self, name: str) -> VmInfo:
        try:
            return self.vms[name]
        except KeyError:
            raise TraceError(f"no VM named {name!r} in this lab "
                             f"(VMs: {', '.join(sorted(self.vms))})") from None

    def ports(self, host: str, bridge: str) -> list[PortInfo]:
        key = (host, bridge)
        if key not in self._ports:
            try:
                self._ports[key] = self.lab.switch(host).ports(bridge)
            except TraceError:
                if bridge not in PHYSICAL_BRIDGES:
                    raise
                self._ports[key] = []  # a lab without VLAN or flat networks has none
        return self._ports[key]

    def port(self, host: str, bridge: str, ofport: int) -> PortInfo | None:
        return next((p for p in self.ports(host, bridge) if p.ofport == ofport), None)

    def local_vlans(self, host: str) -> dict[int, str]:
        """Local VLAN id -> network name on ``host``, read from the tags on its VM ports."""
        if host not in self._local_vlans:
            self._local_vlans[host] = {
                p.tag: self.vm_at[(host, p.name)].network for p in self.ports(host, "br-int")
                if p.tag is not None and (host, p.name) in self.vm_at}
        return self._local_vlans[host]

    # -- the walk -----------------------------------------------------------------------------

    def journey(self, src_name: str, dst_name: str, proto: str = "icmp",
                dport: int | None = None, marker: bytes | None = None,
                size: int | None = None, exchange: bool = True, *,
                verdict: bool = False, src_mac: str | None = None,
                src_ip: str | None = None) -> Journey:
        """The frame SRC sends to DST, walked after what precedes it (the ARP exchange, for
        anything but ARP itself) and, for an ICMP echo, before DST's reply. ``exchange``
        False: this frame alone, on the switches as they are (what ``--live`` sends).
        ``verdict``: the same walk and outcome, without the words only a reader of the
        trace needs (the steps' notes and explanations). ``src_mac``/``src_ip``: the frame
        claims another source than SRC's own (a forgery, which port security drops); what
        precedes it (the ARP exchange) is SRC's honest own."""
        self.verdict = verdict
        try:
            return self._journey(src_name, dst_name, proto, dport, marker, size, exchange,
                                 src_mac, src_ip)
        finally:
            self.verdict = False

    def _journey(self, src_name: str, dst_name: str, proto: str, dport: int | None,
                 marker: bytes | None, size: int | None, exchange: bool,
                 src_mac: str | None = None, src_ip: str | None = None) -> Journey:
        src, dst = self.vm(src_name), self.vm(dst_name)
        if src.name == dst.name:
            raise TraceError(f"source and destination are the same VM ({src.name})")
        probe = build(forged(src, src_mac, src_ip), dst, proto, dport, marker, size)
        self.learned = Learned()
        self._unlearned = []
        self.learning = exchange
        frames: list[dict[str, Any]] = []
        resolved: str | None = None  # the MAC SRC's ARP request was answered with
        if proto != "arp" and exchange:
            resolved = self._resolve(src, dst, frames)
        self.learned.teacher = probe.summary
        walk = self._walk(src, dst, probe)
        visits, encaps, ends = walk.visits, walk.encaps, walk.ends
        if src.network != dst.network and dst.hypervisor not in {v.host for v in visits}:
            self._what_if(src, dst, probe, visits, encaps, ends)
        frames.append(_frame_json(probe, walk, dst, main=True))
        outcome = self._outcome(src, dst, probe, visits, encaps, ends)
        if proto == "icmp" and exchange:
            replied = False
            if walk.reached(dst.name):
                reply = echo_reply(src, dst)
                self.learned.teacher = reply.summary
                self.explaining = False
                back = self._walk(dst, src, reply)
                self.explaining = True
                frames.append(_frame_json(reply, back, src))
                replied = back.reached(src.name)
            outcome.answered = resolved == dst.mac and walk.reached(dst.name) and replied
        outcome.arp_answer = resolved
        self._after_reply()
        self.learning = True
        packet = probe.to_json()
        return Journey(src=_vm_json(src, self), dst=_vm_json(dst, self), packet=packet,
                       visits=visits, encaps=encaps, outcome=outcome, exchange=frames,
                       learned=[lesson.to_json() for lesson in self.learned.lessons.values()])

    def _resolve(self, src: VmInfo, dst: VmInfo, exchange: list[dict[str, Any]]) -> str | None:
        """SRC's ARP request for DST's address and the answer: the MAC it learns (None: no
        answer). Every switch on the way learns from both frames."""
        self.explaining = False
        try:
            return self._arp(src, dst, exchange)
        finally:
            self.explaining = True

    def _arp(self, src: VmInfo, dst: VmInfo, exchange: list[dict[str, Any]]) -> str | None:
        request = arp_request(src, dst)
        self.learned.teacher = request.summary
        walk = self._walk(src, dst, request)
        exchange.append(_frame_json(request, walk, dst))
        if walk.answered_sha:
            return walk.answered_sha  # br-tun's ARP responder answered in DST's stead
        # whoever the broadcast reached that has the address answers: DST, or in another
        # tenant's network a VM of SRC's own network with an equal address
        owners = [self.vms[e.vm] for e in walk.ends if e.vm is not None and not e.hypothetical
                  and e.what in ("delivered", "flooded") and e.vm in self.vms
                  and e.vm != src.name and self.vms[e.vm].ip == dst.ip]
        owner = next((o for o in owners if o.name == dst.name), next(iter(owners), None))
        if owner is None:
            return None
        reply = arp_reply(owner, src)
        self.learned.teacher = reply.summary
        back = self._walk(owner, src, reply)
        exchange.append(_frame_json(reply, back, src))
        return owner.mac if back.reached(src.name) else None

    def _walk(self, src: VmInfo, dst: VmInfo, probe: Probe,
              start: tuple[str, str, str] | None = None) -> Walk:
        """One frame from SRC's vNIC (or ``start``: host, bridge, port), every copy followed
        to its end (DST: who it is for)."""
        walk = Walk([], [], [])
        host, bridge, port = start or (src.hypervisor, "br-int", src.tap)
        queue = [_Pending(host, bridge, port, flowtext.entering(probe.flow, port), None,
                          probe.frame)]
        while queue:
            item = queue.pop(0)
            if len(walk.visits) >= self.max_visits:
                walk.ends.append(End(item.host, item.bridge, None, "lost",
                                     f"the walk stopped after {self.max_visits} bridge visits"))
                break
            walk.visits.append(self._visit(len(walk.visits), item, src, dst, probe,
                                           walk.encaps, walk.ends, queue, walk))
        return walk

    def send(self, host: str, port: str, frame: bytes, src: VmInfo | None = None,
             dst: VmInfo | None = None) -> Walk:
        """Any frame entering ``port`` of ``host`` (a VM's own, tagged or forged, or one from
        a port no VM is behind), walked without the exchange around it: what a switch does
        with exactly this frame. ``src``/``dst`` say whose it is, when anyone's."""
        from tunnelnet.packet.flowkey import extract_flow_key
        from tunnelnet.switch.flow_format import format_key

        bridge = next((b for b in BRIDGES for p in self.ports(host, b) if p.name == port), None)
        if bridge is None:
            raise TraceError(f"{host} has no port {port!r} on {', '.join(BRIDGES)}")
        key = extract_flow_key(frame, 0)
        key.pop("in_port", None)
        nobody = VmInfo("", "", "", host, "", "", 0, port)
        probe = Probe("frame", frame, b"", format_key(key), "a frame")
        self.learned = Learned()
        return self._walk(src or nobody, dst or nobody, probe, start=(host, bridge, port))

    def _after_reply(self) -> None:
        """A flood the switch could not avoid (nothing had come back yet): what the reply
        taught it, for the frames after this one."""
        for visit, (host, bridge, vlan, mac) in self._unlearned:
            lesson = self.learned.where(host, bridge, vlan, mac)
            if lesson is not None:
                visit.learning += (f"; after the {lesson.by} it goes only to {lesson.port}")

    def _what_if(self, src: VmInfo, dst: VmInfo, probe: Probe, visits: list[Visit],
                 encaps: list[Encap], ends: list[End]) -> None:
        """The frame never reached the destination's hypervisor. Show from the attacker's side
        what that host would do if it did arrive there with the source network's key."""
        sent = [e for e in encaps if e.from_host == src.hypervisor]
        if not sent:
            return
        first = sent[0]
        host_ip = self.hv_ips.get(src.hypervisor, "")
        tunnels = [p for p in self.ports(dst.hypervisor, "br-tun")
                   if p.is_tunnel and p.options.get("remote_ip") == host_ip]
        port = next((p for p in tunnels if p.type == first.type), None) or \
            next(iter(tunnels), None)
        if port is None:
            ends.append(End(dst.hypervisor, "br-tun", None, "dropped",
                            f"what if it were sent to {dst.hypervisor} anyway: "
                            f"{dst.hypervisor} has no tunnel port from {src.hypervisor} "
                            f"({host_ip}); its vswitchd drops it as unknown_tunnel_peer before "
                            "any table", hypothetical=True))
            return
        tunnel = {"tun_id": hex(first.key), "tun_src": host_ip,
                  "tun_dst": self.hv_ips.get(dst.hypervisor, "")}
        flow = flowtext.with_vlan(flowtext.entering(probe.flow, port.name, tunnel=tunnel), None)
        before = len(ends)
        self.learning = False
        try:
            visit = self._visit(len(visits), _Pending(dst.hypervisor, "br-tun", port.name,
                                                      flow, None, probe.frame),
                                src, dst, probe, [], ends, [], None)
        finally:
            self.learning = True
        visit.hypothetical = True
        visit.explanation = (f"What if {src.hypervisor} sent it to {dst.hypervisor} anyway, on "
                             f"{port.type} port {port.name} with key {first.key}? "
                             + visit.explanation)
        for end in ends[before:]:
            end.hypothetical = True
            end.reason = f"what if it reached {dst.hypervisor}: {end.reason}"
        visits.append(visit)

    def _visit(self, vid: int, item: _Pending, src: VmInfo, dst: VmInfo, probe: Probe,
               encaps: list[Encap], ends: list[End], queue: list[_Pending],
               walk: Walk | None) -> Visit:
        switch = self.lab.switch(item.host)
        table_walk = getattr(switch, "table_walk", None) if self.verdict else None
        if table_walk is not None:
            walked = table_walk(item.bridge, item.flow, item.key)
            visit, outputs, note = self._walked(vid, item, walked)
            final_key: FlowKey | None = walked.final_key
        else:
            visit, outputs, note = self._traced(vid, item, switch.trace(item.bridge, item.flow))
            final_key = None
        steps = visit.steps
        in_port = next((p for p in self.ports(item.host, item.bridge)
                        if p.name == item.in_port), None)
        vlan_in = self._switched_vlan(in_port, _vlan_of(item.flow, item.key),
                                      _vlan_of(visit.final_flow, final_key))
        seen = _fields_of(item.flow, item.key)
        normal = any("NORMAL" in s.actions for s in steps)
        # NORMAL learns always; br-tun where table 10's learn() action ran
        learns = normal or (item.bridge == "br-tun" and any(
            s.table == TunTable.LEARN_FROM_TUN and "learn(" in s.actions for s in steps))
        if self.learning and learns and seen.get("dl_src"):
            self.learned.learn(item.host, item.bridge, vlan_in, seen["dl_src"], item.in_port)
        dst_mac = seen.get("dl_dst", "").lower()
        flooded = is_unicast(dst_mac) and (
            (normal and (len(outputs) > 1 or any("flooding" in note(i) for i in range(len(steps)))))
            or (item.bridge == "br-tun" and any(s.table == TunTable.FLOOD_TO_TUN
                                                 for s in steps)))
        if flooded:
            outputs = self._first_packet(visit, vlan_in, dst_mac, outputs)
        self._final_key = final_key
        try:
            for ofport in outputs:
                port = self.port(item.host, item.bridge, ofport)
                if port is None:
                    visit.exits.append(Exit(str(ofport), ofport, "drop",
                                            note="no such port on the bridge"))
                    continue
                self._exit(visit, port, vlan_in, item, src, dst, probe, encaps, ends, queue,
                           walk)
        finally:
            self._final_key = None
        if visit.drop or not outputs:
            last = steps[-1] if steps else None
            ends.append(End(item.host, item.bridge, last.table if last else None, "dropped",
                            explain.drop_reason(item.bridge, last, visit.drop_reason)))
        if self.explaining and not self.verdict:
            explain.annotate(visit, self, src, dst)
        return visit

    @staticmethod
    def _traced(vid: int, item: _Pending, raw: dict[str, Any]
                ) -> tuple[Visit, list[int], Callable[[int], str]]:
        """A visit from a switch's trace (``SwitchView.trace``'s JSON shape)."""
        def step(s: Mapping[str, Any]) -> Step:
            return Step(host=item.host, bridge=item.bridge, table=int(s["table"]),
                        priority=int(s["priority"]), match=str(s["match"]),
                        actions=str(s["actions"]), cookie=str(s.get("cookie", "")),
                        note=str(s.get("note", "")))

        steps = [step(s) for s in raw["steps"]]
        visit = Visit(id=vid, host=item.host, bridge=item.bridge, in_port=item.in_port,
                      flow=str(raw["flow"]), steps=steps, exits=[], drop=bool(raw["drop"]),
                      drop_reason=raw.get("drop_reason"), final_flow=str(raw["final_flow"]),
                      parent=item.parent, mtu_check=raw.get("mtu_check"),
                      larger_steps=[step(s) for s in raw.get("larger_steps") or ()])
        return visit, [int(o) for o in raw["outputs"]], lambda i: steps[i].note

    @staticmethod
    def _walked(vid: int, item: _Pending, walked: TableWalk
                ) -> tuple[Visit, list[int], Callable[[int], str]]:
        """A visit from a bridge's table walk as data: the same steps, the notes left out
        (worded on demand, where the walk itself reads one), and no flow text: the walk
        reads the flow keys (see _fields_of, _entering)."""
        records = walked.steps
        steps = [Step(host=item.host, bridge=item.bridge, table=r.table, priority=r.priority,
                      match=r.match, actions=r.actions, cookie=f"{r.cookie:#x}", note="")
                 for r in records]
        visit = Visit(id=vid, host=item.host, bridge=item.bridge, in_port=item.in_port,
                      flow=walked.flow, steps=steps, exits=[], drop=walked.drop,
                      drop_reason=walked.drop_reason, final_flow="",
                      parent=item.parent)
        return visit, list(walked.outputs), lambda i: walked.note(records[i])

    @staticmethod
    def _switched_vlan(in_port: PortInfo | None, before: int | None,
                       after: int | None) -> int | None:
        """The VLAN a bridge switches the frame in: an access port's tag, else the VLAN the
        frame carries once the bridge's flows have set it (br-int translates a physical
        network's VLAN to the local one, br-eth1 the other way), else the one it came with."""
        if in_port is not None and in_port.tag is not None:
            return in_port.tag
        return after if after is not None else before

    def _first_packet(self, visit: Visit, vlan: int | None, mac: str,
                      outputs: list[int]) -> list[int]:
        """The switch's own lookup floods a unicast frame: it has not learned ``mac``. If the
        exchange's earlier frames taught it, the frame goes only where they came from."""
        host, bridge = visit.host, visit.bridge
        named = {o: (p.name if (p := self.port(host, bridge, o)) is not None else str(o))
                 for o in outputs}
        listed = ", ".join(named.values()) or "no port"
        lesson = self.learned.where(host, bridge, vlan, mac) if self.learning else None
        head = f"flooded because {host}'s {bridge} has not learned {mac}: a first packet"
        if lesson is not None and lesson.port in named.values():
            after = "the ARP exchange" if lesson.by.startswith("ARP") else f"the {lesson.by}"
            visit.learning = (f"{head}; after {after} it goes only to {lesson.port} "
                              f"(learned from the {lesson.by}), as this trace follows it (the "
                              f"switch's lookup alone, learning nothing, sends it to {listed})")
            return [o for o, name in named.items() if name == lesson.port]
        visit.learning = (f"{head}, or nothing from {mac} has come back through here to "
                          f"teach it; copies go to {listed}")
        if self.learning:
            self._unlearned.append((visit, (host, bridge, vlan, mac)))
        return outputs

    def _exit(self, visit: Visit, port: PortInfo, vlan_in: int | None, item: _Pending,
              src: VmInfo, dst: VmInfo, probe: Probe, encaps: list[Encap], ends: list[End],
              queue: list[_Pending], walk: Walk | None) -> None:
        host, bridge = item.host, item.bridge
        final = visit.final_flow
        final_key = self._final_key
        if bridge == "br-int":
            # NORMAL: trunk ports carry the local VLAN as 802.1Q, access ports none
            vlan = None if port.tag is not None else vlan_in
        else:
            vlan = _vlan_of(final, final_key)
        exit_ = Exit(port.name, port.ofport, "port", vlan=vlan)
        visit.exits.append(exit_)
        vm = self.vm_at.get((host, port.name))
        if vm is not None:
            exit_.kind, exit_.vm = "vm", vm.name
            f = _fields_of(final, final_key)
            end = _arrival(host, bridge, f, vm, src, dst)
            if end.what == "answered" and walk is not None:
                walk.answered_sha = f.get("arp_sha", "").lower()
            ends.append(end)
            return
        if port.type == crossing.PATCH:
            exit_.kind = "patch"
            found = crossing.patch_peer(port, lambda name: self._on_other_bridge(host, bridge,
                                                                                 name))
            if found is None:
                ends.append(End(host, bridge, None, "dropped",
                                f"patch port {port.name} has no peer "
                                f"{port.options.get('peer', '')!r} on this host"))
                return
            other, peer = found.bridge, found.port.name
            exit_.next_visit = -1  # filled in when the queue is drained (see _link)
            key = self._entering(found.port, vlan)
            queue.append(_Pending(host, other, peer,
                                  _entering_text(final, peer, vlan, key),
                                  visit.id, item.frame, key))
            return
        if port.is_tunnel:
            exit_.kind = "tunnel"
            self._tunnel(visit, exit_, port, item, final, vlan, encaps, ends, queue)
            return
        if self._is_uplink(bridge, port):
            exit_.kind = "physical"
            self._physical(visit, exit_, item, vlan, ends, queue)
            return
        if port.type == "internal":
            ends.append(End(host, bridge, None, "flooded", f"a copy goes to the bridge's own "
                            f"internal port {port.name} (the host's stack; nothing there "
                            "wants it)"))
            return
        ends.append(End(host, bridge, None, "lost", f"left through {port.name} ({port.type}), "
                        "which leads to nothing this lab knows"))

    def _entering(self, port: PortInfo, vlan: int | None,
                  tunnel: tuple[int, str, str] | None = None) -> FlowKey | None:
        """The key of the flow that enters ``port`` after the visited bridge: its final key
        with what ``flowtext.entering`` and ``flowtext.with_vlan`` change in the text (the
        input port, the tunnel metadata, the 802.1Q tag), as the next bridge would read that
        text. None outside verdict mode (the next bridge reads the text)."""
        final = self._final_key
        if final is None:
            return None
        key = dict(final)
        key["in_port"] = port.ofport
        if tunnel is None:
            key["tun_id"] = key["tun_src"] = key["tun_dst"] = 0
        else:
            key["tun_id"] = tunnel[0]
            key["tun_src"] = int(IPv4Address(tunnel[1])) if tunnel[1] else 0
            key["tun_dst"] = int(IPv4Address(tunnel[2])) if tunnel[2] else 0
        key["vlan_tci"] = 0 if vlan is None else VLAN_CFI | vlan
        # a second tag is in the text only after a first one, and read back only then
        if not (vlan is not None and final["vlan_tci"] & VLAN_CFI
                and final.get("vlan_tci1", 0) & VLAN_CFI):
            key.pop("vlan_tci1", None)
        return key

    def _on_other_bridge(self, host: str, bridge: str, name: str) -> _BridgePort | None:
        """Port ``name`` on one of ``host``'s bridges other than ``bridge``."""
        return next((_BridgePort(b, p) for b in BRIDGES if b != bridge
                     for p in self.ports(host, b) if p.name == name), None)

    @staticmethod
    def _is_uplink(bridge: str, port: PortInfo) -> bool:
        """A physical bridge's NIC (br-eth1's eth1): the way onto the physical switch."""
        return bridge in PHYSICAL_BRIDGES and port.type == "system"

    def _uplink(self, host: str) -> tuple[str, PortInfo] | None:
        return next(((b, p) for b in PHYSICAL_BRIDGES for p in self.ports(host, b)
                     if self._is_uplink(b, p)), None)

    def _physical(self, visit: Visit, exit_: Exit, item: _Pending, vlan: int | None,
                  ends: list[End], queue: list[_Pending]) -> None:
        """The lab's physical switch (a learning bridge in the underlay's namespace, whose
        ports carry untagged frames and the VLANs of the lab's VLAN networks): to the
        uplink of the hypervisor that has the destination MAC, or every other one."""
        host = item.host
        if vlan is not None and vlan not in self.physical_vlans:
            carried = ", ".join(map(str, sorted(self.physical_vlans))) or "none"
            ends.append(End(host, item.bridge, None, "dropped",
                            f"the physical switch does not carry VLAN {vlan} (its ports are "
                            f"configured for VLANs {carried} and untagged frames)"))
            return
        f = _fields_of(visit.final_flow, self._final_key)
        dst_mac = f.get("dl_dst", "").lower()
        if self.learning and f.get("dl_src"):
            self.learned.learn(UNDERLAY, PHYSICAL_SWITCH, vlan, f["dl_src"], host)
        others = [h for h in sorted(self.hv_ips) if h != host]
        lesson = (self.learned.where(UNDERLAY, PHYSICAL_SWITCH, vlan, dst_mac)
                  if is_unicast(dst_mac) and self.learning else None)
        targets = [lesson.port] if lesson is not None and lesson.port in others else others
        on_vlan = f"VLAN {vlan}" if vlan is not None else "untagged"
        exit_.note = (f"onto the physical switch ({on_vlan}), to "
                      f"{', '.join(targets) or 'no other hypervisor'}")
        if lesson is not None and len(others) > 1:
            exit_.note += f" (it learned {dst_mac} there from the {lesson.by})"
        first = True
        for other in targets:
            found = self._uplink(other)
            if found is None:
                continue
            bridge, uplink = found
            if first:
                exit_.next_visit = -1
                first = False
            key = self._entering(uplink, vlan)
            queue.append(_Pending(other, bridge, uplink.name,
                                  _entering_text(visit.final_flow, uplink.name, vlan, key),
                                  visit.id, item.frame, key))
        if first:
            ends.append(End(host, item.bridge, None, "lost", "no other hypervisor has an "
                            "uplink on the physical switch"))

    def _tunnel(self, visit: Visit, exit_: Exit, port: PortInfo, item: _Pending, final: str,
                vlan: int | None, encaps: list[Encap], ends: list[End],
                queue: list[_Pending]) -> None:
        host = item.host
        hop = crossing.tunnel_hop(port, int(_fields_of(final, self._final_key)
                                            .get("tun_id", "0"), 0),
                                  self.hv_ips.get(host, ""))
        key, local_ip, remote_ip = hop.key, hop.local_ip, hop.remote_ip
        inner = _tagged(item.frame, vlan)
        over = overhead(port.type)
        mtu = port.underlay_mtu or 1500
        to_host = crossing.host_at(remote_ip, self.hv_ips)
        remote_port = None
        entry: PortInfo | None = None
        if to_host is not None:
            entry = hop.entry(self.ports(to_host, "br-tun"))
            remote_port = entry.name if entry is not None else None
        # our vswitchd's source port is predictable (RFC 7348 hash of the inner frame); a
        # switch that picks its own (Open vSwitch) leaves it open: udp_src None for a UDP kind
        ours = bool(getattr(self.lab.switch(host), "vxlan_source_port_is_ours", True))
        kind = tunnel_kinds.kind(port.type)
        udp = kind.transport is tunnel_kinds.Transport.UDP
        encap = Encap(type=port.type, from_host=host, to_host=to_host, tunnel_port=port.name,
                      remote_port=remote_port, outer_src=local_ip, outer_dst=remote_ip, key=key,
                      udp_src=source_port(inner) if udp and ours else None,
                      udp_dst=int(port.options.get("dst_port", kind.number)) if udp else None,
                      inner_length=len(inner), outer_ip_length=len(inner) + over - 14,
                      outer_frame_length=len(inner) + over, underlay_mtu=mtu,
                      fits=len(inner) + over - 14 <= mtu,
                      vm_mtu=mtu - over + tunnel_kinds.OUTER_ETHERNET - pmtu.l2_length(inner))
        verdict = None
        # the frame as br-tun's check_pkt_larger weighs it: as it came in, local VLAN tag on
        at_check = _tagged(item.frame, _vlan_of(item.flow, item.key))
        if visit.mtu_check is not None and len(at_check) > visit.mtu_check:
            # Open vSwitch with the MTU doctor: br-tun sends it to the agent, which answers
            # with the same function our datapath calls (agent/mtu_doctor.py)
            verdict = pmtu.answer(at_check, visit.mtu_check)
            encap.oversize = verdict.what.value
            checked = next((i for i, s in enumerate(visit.steps)
                            if "check_pkt_larger" in s.actions), len(visit.steps) - 1)
            visit.steps[checked + 1:] = visit.larger_steps
            encap.doctor = visit.mtu_check
        elif not encap.fits:
            # what the switch does with it: ours answers as packet/pmtu.py says (the same
            # function the datapath calls), Open vSwitch drops it without a word
            verdict = pmtu.answer(inner, mtu - over + tunnel_kinds.OUTER_ETHERNET)
            answers = bool(getattr(self.lab.switch(host), "answers_oversize", True))
            encap.oversize = verdict.what.value if answers else "dropped silently"
        explain.annotate_encap(encap, self)
        encap.liveness = explain.tunnel_liveness(port, to_host or remote_ip)
        exit_.encap = len(encaps)
        encaps.append(encap)
        if verdict is not None:
            ends.append(End(host, item.bridge, None, "dropped",
                            explain.oversize_words(encap, verdict, self.lab.switch(host))))
            return
        if to_host is None:
            ends.append(End(host, item.bridge, None, "lost", f"{remote_ip} is no hypervisor "
                            "of this lab"))
            return
        if remote_port is None:
            ends.append(End(to_host, "br-tun", None, "dropped", f"{to_host} has no "
                            f"{port.type} tunnel port from {local_ip}: its vswitchd drops the "
                            "packet as unknown_tunnel_peer"))
            return
        exit_.next_visit = -1
        tunnel = {"tun_id": hex(key), "tun_src": local_ip, "tun_dst": remote_ip}
        next_key = (self._entering(entry, vlan, (key, local_ip, remote_ip))
                    if entry is not None else None)
        flow = _entering_text(final, remote_port, vlan, next_key, tunnel)
        queue.append(_Pending(to_host, "br-tun", remote_port, flow, visit.id, inner, next_key))

    def _outcome(self, src: VmInfo, dst: VmInfo, probe: Probe, visits: list[Visit],
                 encaps: list[Encap], ends: list[End]) -> Outcome:
        _link(visits)
        outcome = Outcome(delivered=any(e.what in ("delivered", "answered") and e.vm in
                                        (dst.name, src.name) and not e.hypothetical
                                        for e in ends),
                          summary="", reached_tunnel=bool(encaps), ends=ends)
        outcome.summary = explain.summary(outcome, src, dst, probe, visits, encaps, self)
        down = self._tunnel_down(src, dst)
        if down:
            outcome.summary = down[0].upper() + down[1:] + ". " + outcome.summary
        return outcome

    def _tunnel_down(self, src: VmInfo, dst: VmInfo) -> str:
        """What BFD says of a tunnel between the two VMs' hypervisors that is not up ("" when
        there is none): the first thing an operator wants to read when a ping fails."""
        far_ip = self.hv_ips.get(dst.hypervisor)
        if src.hypervisor == dst.hypervisor or far_ip is None:
            return ""
        try:
            ports = self.ports(src.hypervisor, "br-tun")
        except TraceError:
            return ""
        for port in ports:
            if port.is_tunnel and port.options.get("remote_ip") == far_ip:
                words = explain.tunnel_liveness(port, dst.hypervisor)
                if words:
                    return words
        return ""


def _link(visits: list[Visit]) -> None:
    """Point each patch/tunnel exit at the visit it led to (children are queued in order)."""
    children: dict[int, list[int]] = {}
    for v in visits:
        if v.parent is not None:
            children.setdefault(v.parent, []).append(v.id)
    for v in visits:
        kids = children.get(v.id, [])
        for exit_ in v.exits:
            if exit_.next_visit == -1:
                exit_.next_visit = kids.pop(0) if kids else None


def _fields_of(flow: str, key: FlowKey | None) -> Mapping[str, str]:
    """The fields of the walk's flow text that the walker reads, as the text has them: from
    the key, when a verdict walk handed it on instead of the text (see _entering)."""
    if key is None:
        return flowtext.fields(flow)
    return _KeyFields(key)


class _KeyFields(Mapping[str, str]):
    """The flow text's fields the walker reads, printed from the key one by one when read
    (most visits read one or two of them)."""

    __slots__ = ("_key",)

    def __init__(self, key: FlowKey) -> None:
        self._key = key

    def _names(self) -> list[str]:
        names = ["dl_src", "dl_dst"]
        if self._key.get("tun_id"):  # printed only when set
            names.append("tun_id")
        if self._key.get("dl_type") == ETH_TYPE_ARP:
            names += ["arp_op", "arp_spa", "arp_sha"]
        return names

    def __getitem__(self, name: str) -> str:
        key = self._key
        if name not in self._names():
            raise KeyError(name)
        if name in ("dl_src", "dl_dst", "arp_sha"):
            return int_to_mac(key[name])
        if name == "tun_id":
            return hex(key[name])
        if name == "arp_spa":
            return str(IPv4Address(key[name]))
        return str(key[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def _vlan_of(flow: str, key: FlowKey | None) -> int | None:
    """flowtext.vlan_of of the flow text, from the key when there is one."""
    if key is None:
        return flowtext.vlan_of(flow)
    tci = key.get("vlan_tci", 0)
    return tci & 0x0FFF if tci & VLAN_CFI else None


def _entering_text(final: str, port: str, vlan: int | None, key: FlowKey | None,
                   tunnel: dict[str, str] | None = None) -> str:
    """The flow text entering the next bridge; none when its key is handed on instead (a
    verdict walk reads no flow text)."""
    if key is not None:
        return ""
    return flowtext.with_vlan(flowtext.entering(final, port, tunnel=tunnel), vlan)


def _tagged(frame: bytes, vlan: int | None) -> bytes:
    if vlan is None:
        return frame
    return frame[:12] + b"\x81\x00" + vlan.to_bytes(2, "big") + frame[12:]


def _arrival(host: str, bridge: str, f: Mapping[str, str], vm: VmInfo, src: VmInfo,
             dst: VmInfo) -> End:
    dl_dst = f.get("dl_dst", "").lower()
    if vm.name == dst.name and dl_dst in (vm.mac, BROADCAST):
        return End(host, bridge, None, "delivered", f"out of {vm.tap}, {vm.name}'s vNIC", vm.name)
    if vm.name == src.name and f.get("arp_op") == "2":
        return End(host, bridge, None, "answered", f"an ARP reply comes back to {vm.name} "
                   f"saying {f.get('arp_spa')} is at {f.get('arp_sha')}", vm.name)
    if dl_dst in (vm.mac, BROADCAST):
        return End(host, bridge, None, "flooded", f"a copy reaches {vm.name} ({vm.tap}), "
                   "which is not the destination", vm.name)
    return End(host, bridge, None, "discarded", f"a copy reaches {vm.name}'s vNIC ({vm.tap}); "
               f"the frame is addressed to {dl_dst}, not {vm.mac}, so its NIC discards it",
               vm.name)


def _frame_json(probe: Probe, walk: Walk, to: VmInfo, *, main: bool = False
                ) -> dict[str, Any]:
    """One frame of the exchange, in short: what it was and where its copies ended."""
    return {"packet": probe.summary, "main": main,
            "delivered": walk.reached(to.name) or bool(walk.answered_sha), "to": to.name,
            "visits": len(walk.visits),
            "hosts": sorted({v.host for v in walk.visits if not v.hypothetical}),
            "floods": [f"{v.host} {v.bridge}: {v.learning}" for v in walk.visits if v.learning],
            "ends": [{"what": e.what, "host": e.host, "bridge": e.bridge, "vm": e.vm,
                      "reason": e.reason, "hypothetical": e.hypothetical} for e in walk.ends]}


def _vm_json(vm: VmInfo, walker: Walker) -> dict[str, Any]:
    net = walker.networks.get(vm.network)
    return {"name": vm.name, "tenant": vm.tenant, "network": vm.network,
            "hypervisor": vm.hypervisor, "mac": vm.mac, "ip": vm.ip, "port": vm.tap,
            "network_type": net.type if net else None,
            "segment": net.segment if net else None}


def trace(lab: LabView, src: str, dst: str, proto: str = "icmp", dport: int | None = None,
          marker: bytes | None = None, size: int | None = None,
          exchange: bool = True, *, src_mac: str | None = None,
          src_ip: str | None = None) -> Journey:
    return Walker(lab).journey(src, dst, proto, dport, marker, size, exchange,
                               src_mac=src_mac, src_ip=src_ip)
