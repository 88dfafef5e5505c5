"""The agent's main loop: list and watch the controller, converge the switch, report back.

One thread does everything in rounds: take controller events (long poll, bounded), read the
vNICs on br-int, compute the desired state, and apply the difference. A round in which
nothing it plans from changed (the same view of the controller, the same ports on the
bridges, no port it reported ACTIVE since gone from that list) computes nothing: it would
plan the same flows, and a thousand idle agents each planning twice a second is what kept a
thousand-host cloud from converging. Of what does change, br-tun's flows are planned again
only for the networks whose inputs changed (`desired.br_tun_flows`' memo). A switch restart (the
canary flow is gone) makes the agent forget what it installed and program everything again.

While no controller answers, the agent changes no flow: it keeps forwarding on what it has,
retries with backoff (its controller client moves on to the next controller of its list), and
says so once in its log. The one exception is a switch that lost its flows meanwhile: those
are put back from the last view, which is restoring, not changing. When a controller answers
again the agent resumes from its last revision; only a ResyncRequired (the changes after it
were compacted away) makes it list everything again.
"""

from __future__ import annotations

import functools
import logging
import queue
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunnelnet.agent import br_phys, br_tun, desired, liveness
from tunnelnet.agent.applier import FlowApplier
from tunnelnet.agent.backend import BackendError, SwitchBackend, SwitchPort
from tunnelnet.agent.controller import Controller, ControllerCache, Event
from tunnelnet.agent.local_vlan import LocalVlanManager
from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.agent.tunnels import parse_tunnel_port_name
from tunnelnet.agent.view import CloudView, Network, Port
from tunnelnet.api import ResyncRequired
from tunnelnet.errors import TunnelnetError
from tunnelnet.packet import tunnel_kinds
from tunnelnet.switch.pipeline import IntTable

log = logging.getLogger(__name__)

BR_INT = "br-int"
BR_TUN = "br-tun"
PATCH_TUN = "patch-tun"  # on br-int
PATCH_INT = "patch-int"  # on br-tun


# a pure function of a port's name, asked for every br-tun port each planned round
_parse_tunnel_name = functools.lru_cache(maxsize=1 << 16)(parse_tunnel_port_name)

SWITCH_RETRY = 0.05  # seconds of long poll in the round after a failed switch request


@dataclass
class AgentTimers:
    # the round: how soon a vNIC plugged on the switch (or a switch restart) is acted on
    poll_interval: float = 0.5
    heartbeat_interval: float = 5.0
    max_backoff: float = 8.0
    # the controller's long poll, when longer than the round: it then runs in a thread of its
    # own (`_Poller`), so an idle agent asks the controller this seldom while its rounds still
    # read the switch every `poll_interval`; None: one poll per round, in the round
    long_poll: float | None = None


@dataclass
class AgentStats:
    rounds: int = 0
    plans: int = 0  # rounds that planned the flows (something they come from changed)
    controller_errors: int = 0
    resyncs: int = 0
    snapshots: int = 0  # full lists of the controller's state (the first, then each resync)
    outages: int = 0  # stretches of time in which no controller answered
    switch_resets: int = 0
    network_listings: int = 0  # networks whose ports were listed on our first port there
    ports_active: set[str] = field(default_factory=set)
    # tunnel port name -> its bfd_status as last read (every tunnel with BFD on)
    tunnels: dict[str, dict[str, str]] = field(default_factory=dict)
    tunnels_down: set[str] = field(default_factory=set)  # out of the flood lists


class _Poller:
    """The controller's long poll in a thread of its own, for an agent whose rounds must read
    the switch more often than an idle controller has anything to say.

    Only the agent's thread touches its cache: this thread only fetches, from the revision
    the agent gave it (`start`), and queues each answer (events, or the error that ended the
    poll) with the generation it was asked for; the agent drops the answers of a generation
    it has moved past (a resync, a restart after an outage). After an error it waits until
    the agent starts it again, so retries follow the agent's backoff. After an answer it
    waits until the agent asks for more (`want`, at its next wait for events): polled again
    at once, while the agent still applies the answer, it would bring the events of a busy
    cloud one by one (an answer, and a round planned, per event) where one poll after the
    round brings all those that came meanwhile, as the poll in the round did."""

    def __init__(self, controller: Controller, timeout: float) -> None:
        self.controller = controller
        self.timeout = timeout
        self.answers: queue.Queue[tuple[int, list[Event] | TunnelnetError]] = queue.Queue()
        self._lock = threading.Condition()
        self._since: int | None = None  # None: not polling (not started, or failed)
        self._wanted = False  # the agent waits for events: poll (again)
        self.generation = 0
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        with self._lock:
            return self._since is not None

    def start(self, since: int) -> None:
        """Poll from `since`, as a new generation."""
        with self._lock:
            self.generation += 1
            self._since = since
            self._wanted = True
            self._lock.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="controller-poll",
                                            daemon=True)
            self._thread.start()

    def want(self) -> None:
        """The agent is ready for the events after what it has: poll, if not polling."""
        with self._lock:
            self._wanted = True
            self._lock.notify_all()

    def stop(self) -> None:
        with self._lock:
            self.generation += 1
            self._since = None

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._since is None or not self._wanted:
                    self._lock.wait()
                since, generation = self._since, self.generation
            try:
                answer: list[Event] | TunnelnetError = self.controller.watch(since,
                                                                             self.timeout)
            except TunnelnetError as exc:
                answer = exc
            with self._lock:
                self._wanted = False  # asked while this poll was out: already answered
                if generation == self.generation:
                    if isinstance(answer, list):
                        self._since = max([since, *(e.revision for e in answer)])
                    else:
                        self._since = None
            self.answers.put((generation, answer))


class Agent:
    def __init__(self, conf: desired.AgentConfig, controller: Controller,
                 backend: SwitchBackend, *, timers: AgentTimers | None = None,
                 bridge_mappings: Mapping[str, str] | None = None,
                 cookie: int | None = None,
                 bfd: liveness.BfdSettings | None = None) -> None:
        self.conf = conf
        self.controller = controller
        self.backend = backend
        self.timers = timers or AgentTimers()
        self.bridge_mappings = dict(bridge_mappings or {})
        # BFD on every tunnel port (None: the agent leaves the bfd column alone)
        self.bfd = bfd
        # what the controller hears of our tunnels (/v2.0/tunnels), with the time each state
        # was first seen; sent with the next heartbeat, at once when a state changed
        self._tunnel_report: list[dict[str, Any]] = []
        self._tunnel_seen: dict[str, tuple[str, float]] = {}  # port -> (state, since)
        self._report_due = False
        # a new cookie per agent start: flows of earlier generations are swept after resync
        self.cookie = cookie if cookie is not None else random.getrandbits(63) | 1
        self.cache = ControllerCache(host=conf.host, l2pop=conf.l2pop)
        self.lvm = LocalVlanManager()
        self.int_flows = FlowApplier(backend, BR_INT, self.cookie)
        self.tun_flows = FlowApplier(backend, BR_TUN, self.cookie)
        self.phys_flows: dict[str, FlowApplier] = {}
        self.stats = AgentStats()
        self._synced = False
        self._registered = False
        self._last_heartbeat = 0.0
        self._backoff = 0.0
        self._next_contact = 0.0
        # after a failed switch request: the next round asks the controller only briefly, so
        # that a restarted switch is reprogrammed at once, not after a long poll
        self._switch_retry = False
        self._outage_since: float | None = None  # monotonic time no controller answered from
        self._bound: set[str] = set()  # ports bound by the last converge, to report ACTIVE
        # each bound port as the cache showed it when its status was last judged here
        self._judged: dict[str, Port] = {}
        # br-tun's flows per network as last planned, and from what (desired.br_tun_flows)
        self._tun_memo = desired.NetworkFlowMemo()
        # br-int's spoofing protection per vNIC as last planned (desired.int_bridge_flow_groups)
        self._int_memo = desired.IntFlowMemo()
        self._bridges_ready = False
        # what the last full converge planned from (see the module's doc); None: plan again
        self._planned_from: tuple[CloudView, object, frozenset[str]] | None = None
        # what the last tunnel convergence that changed nothing saw: the planned tunnels,
        # br-tun's ports, and the numbers it returned (see _converge_tunnels)
        self._tunnels_from: tuple[list[desired.TunnelPort], list[SwitchPort],
                                  dict[str, int]] | None = None
        long_poll = self.timers.long_poll
        self._poller = _Poller(controller, long_poll) if long_poll is not None and \
            long_poll > self.timers.poll_interval else None

    def _forget_flows(self) -> None:
        """Nothing we installed is known to be on the switch any more."""
        for applier in (self.int_flows, self.tun_flows, *self.phys_flows.values()):
            applier.forget()
        self._planned_from = None
        self._tunnels_from = None

    # -- switch side ------------------------------------------------------------------------

    def _ensure_bridges(self) -> None:
        self.backend.ensure_bridge(BR_INT, fail_secure=True)
        self.backend.ensure_bridge(BR_TUN, fail_secure=True)
        self.backend.add_port(BR_INT, PATCH_TUN, type="patch", options={"peer": PATCH_INT})
        self.backend.add_port(BR_TUN, PATCH_INT, type="patch", options={"peer": PATCH_TUN})
        for bridge in sorted(set(self.conf.bridge_mappings.values())):
            # the operator made the physical bridge and put the uplink on it (as in Neutron);
            # we only join it to br-int
            self.backend.ensure_bridge(bridge, fail_secure=True)
            int_patch, phy_patch = br_phys.int_patch_name(bridge), br_phys.phy_patch_name(bridge)
            self.backend.add_port(BR_INT, int_patch, type="patch", options={"peer": phy_patch})
            self.backend.add_port(bridge, phy_patch, type="patch", options={"peer": int_patch})
        self._bridges_ready = True

    def _provider_flows(self, bindings: list[desired.Binding], local_vlans: dict[str, int],
                        int_ports: list[SwitchPort]) -> desired.ProviderFlows:
        """Program each physical bridge; returns what br-int needs for them too."""
        phys_ports = {bridge: self.backend.list_ports(bridge)
                      for bridge in sorted(set(self.conf.bridge_mappings.values()))}
        provider = desired.provider_flows(self.conf, bindings, local_vlans, int_ports,
                                          phys_ports)
        for bridge, flows in provider.bridges.items():
            applier = self.phys_flows.setdefault(bridge, FlowApplier(self.backend, bridge,
                                                                     self.cookie))
            applier.apply(flows)
        return provider

    def _switch_restarted(self) -> bool:
        """The canary flow of br-int is gone: the switch lost its flows."""
        if not self.int_flows.has_installed:
            return False
        return not self.backend.dump_flows(BR_INT, table=int(IntTable.CANARY))

    def _restore_local_vlans(self, ports: list[SwitchPort]) -> None:
        """After an agent restart, keep the local VLANs the switch already uses, so that no
        port is retagged (and no packet lost) while the agent catches up."""
        for port in ports:
            iface = port.external_ids.get("iface-id")
            known = self.cache.ports.get(iface or "")
            if known and port.tag and port.tag != DEAD_VLAN and self.lvm.get(known.network_id) \
                    is None:
                try:
                    self.lvm.restore(known.network_id, port.tag)
                except ValueError as exc:
                    log.warning("not restoring local VLAN of %s: %s", port.name, exc)

    def converge(self) -> None:
        """One full round of desired state -> switch."""
        if not self._bridges_ready:
            self._ensure_bridges()
        elif self._switch_restarted():
            log.warning("br-int lost its flows (switch restart?): reprogramming everything")
            self.stats.switch_resets += 1
            self._forget_flows()
            self._ensure_bridges()
        int_ports = self.backend.list_ports(BR_INT)
        tun_ports = self.backend.list_ports(BR_TUN)
        view = self.cache.view()
        # the view is immutable and the same object while the cache did not change: compared
        # by identity (comparing 20,000 ports would cost what planning does)
        switch = (int_ports, tun_ports,
                  [self.backend.list_ports(b) for b in sorted(set(
                      self.conf.bridge_mappings.values()))])
        active = frozenset(self.stats.ports_active)
        last = self._planned_from
        # ports reported ACTIVE since are no input that matters: a plan reads them only to
        # forget the learned entries of bound ports not yet reported, which the last plan
        # did for all of these (the same view and switch bind the same ports); planning
        # again after every status report was a third of a filling cloud's plans
        if last is not None and last[0] is view and last[1] == switch and last[2] <= active:
            return  # the same inputs plan the same flows: nothing to do
        self._planned_from = None  # until this round is through
        self.stats.plans += 1
        if not self.lvm.items():
            self._restore_local_vlans(int_ports)
        vnics = desired.vnics_of(int_ports, patch_tun=PATCH_TUN)
        bound, dead = desired.plan_bindings(self.conf, view, vnics)
        local_vlans = desired.assign_local_vlans(self.lvm, bound)
        current_tags = {p.name: p.tag for p in int_ports}
        provider = self._provider_flows(bound, local_vlans, int_ports)
        # dead ports first: an unbound vNIC must never sit on a live VLAN; and a port's
        # spoofing protection is in place before the port leaves the dead VLAN
        self.int_flows.apply_groups(desired.int_bridge_flow_groups(dead, bound, provider,
                                                                   self._int_memo))
        for name, tag in desired.port_tags(bound, dead, local_vlans).items():
            if current_tags.get(name) != tag:
                self.backend.set_port_tag(BR_INT, name, tag)
        local_networks = {b.network.id: b.network for b in bound}
        tunnel_ofports = self._converge_tunnels(view, list(local_networks.values()),
                                                tun_ports)
        # read before the tunnels were converged: the patch port is made with the bridge
        patch_int = next(p.ofport for p in tun_ports if p.name == PATCH_INT)
        self.tun_flows.apply_groups(desired.br_tun_flow_groups(
            self.conf, view, cookie=self.cookie, patch_int_ofport=patch_int,
            local_networks=local_networks.values(), local_vlans=local_vlans,
            tunnel_ofports=tunnel_ofports, down_tunnels=frozenset(self.stats.tunnels_down),
            memo=self._tun_memo))
        self._forget_learned_locals(
            [b for b in bound if b.port.id not in self.stats.ports_active], local_vlans)
        self._bound = {b.port.id for b in bound}
        self._planned_from = (view, switch, active)

    def _forget_learned_locals(self, new: list[desired.Binding],
                               local_vlans: dict[str, int]) -> None:
        """A port that has just come here (a VM booted, or moved in by a live migration) may
        have left behind what table 10 learned while it was elsewhere: "this MAC is behind
        the tunnel to its old host", kept until its hard timeout. br-int switches frames to
        it locally, but the entry would still say the MAC lives there; remove it."""
        for binding in new:
            if not tunnel_kinds.is_tunnel(binding.network.network_type):
                continue
            match = br_tun.learned_entry(local_vlans[binding.network.id], binding.port.mac)
            self.backend.del_flows(BR_TUN, match, strict=True)

    def _converge_tunnels(self, view: CloudView, local_networks: list[Network],
                          tun_ports: list[SwitchPort]) -> dict[str, int]:
        """Make br-tun's tunnel ports (``tun_ports``: br-tun as read this round) the
        planned ones; returns their OpenFlow numbers by name."""
        planned = desired.plan_tunnels(self.conf, view, local_networks)
        last = self._tunnels_from
        # the same plan over the same ports, after a round that changed none of them: the
        # same numbers, and the same BFD states to judge (a full mesh is a port per peer)
        if last is not None and last[0] == planned and last[1] == tun_ports:
            return last[2]
        self._tunnels_from = None
        wanted = {t.name: t for t in planned}
        have = {p.name: p for p in tun_ports if _parse_tunnel_name(p.name)}
        changed = set(have) != set(wanted)
        for name in sorted(set(have) - set(wanted)):
            log.info("removing tunnel %s", name)
            self.backend.del_port(BR_TUN, name)
            self.backend.del_flows(BR_TUN, br_tun.learned_towards(have[name].ofport))
        ofports = {n: p.ofport for n, p in have.items() if n in wanted}
        for name, tunnel in sorted(wanted.items()):
            if name not in have:
                log.info("creating tunnel %s to %s", name, tunnel.remote_ip)
                ofports[name] = self.backend.add_port(
                    BR_TUN, name, type=tunnel.network_type,
                    options={"remote_ip": tunnel.remote_ip, "local_ip": self.conf.tunnel_ip,
                             "key": "flow"})
        changed |= self._converge_liveness({n: p for n, p in have.items() if n in wanted},
                                           wanted)
        if not changed:
            self._tunnels_from = (planned, tun_ports, ofports)
        return ofports

    def _converge_liveness(self, have: Mapping[str, SwitchPort],
                           wanted: Mapping[str, desired.TunnelPort]) -> bool:
        """Put our BFD settings on every tunnel, read their sessions, and decide which
        tunnels the flood lists leave out, saying so when that changes. True: a tunnel's
        BFD settings were changed."""
        changed = False
        if self.bfd is not None:
            column = self.bfd.column()
            for name in sorted(wanted):
                port = have.get(name)
                if port is None or dict(port.bfd) != column:
                    self.backend.set_bfd(BR_TUN, name, column)
                    changed = True
        self.stats.tunnels = {n: dict(p.bfd_status) for n, p in have.items() if p.bfd_status}
        down = {n for n, status in self.stats.tunnels.items() if liveness.tunnel_down(status)}
        for name in sorted(down - self.stats.tunnels_down):
            log.warning("tunnel %s to %s is down (%s): taken out of the flood lists", name,
                        wanted[name].remote_ip, liveness.describe(self.stats.tunnels[name]))
        for name in sorted(self.stats.tunnels_down - down):
            if name in wanted:
                log.warning("tunnel %s to %s is up again: back in the flood lists", name,
                            wanted[name].remote_ip)
        self.stats.tunnels_down = down
        self._update_report(wanted)
        return changed

    def _update_report(self, wanted: Mapping[str, desired.TunnelPort]) -> None:
        report = []
        for name, status in sorted(self.stats.tunnels.items()):
            state = status.get("state", "down")
            seen = self._tunnel_seen.get(name)
            if seen is None or seen[0] != state:
                seen = self._tunnel_seen[name] = (state, time.time())
                self._report_due = True
            report.append({"port": name, "remote_ip": wanted[name].remote_ip, "state": state,
                           "forwarding": status.get("forwarding") == "true",
                           "diagnostic": status.get("diagnostic"), "changed_at": seen[1]})
        for gone in set(self._tunnel_seen) - set(self.stats.tunnels):
            del self._tunnel_seen[gone]
            self._report_due = True
        self._tunnel_report = report

    # -- controller side --------------------------------------------------------------------

    def _report_port_status(self, bound_ids: set[str]) -> None:
        """Reports what changed since the last report, all ports in one request (Neutron's
        update_device_list): one request per port was most of a filling cloud's controller
        work. Nothing is taken as reported until the controller took the report; a round
        that finds no controller reports it all again later."""
        report: dict[str, str] = {}
        judged: dict[str, Port | None] = {}
        for port_id in sorted(bound_ids):
            port = self.cache.ports.get(port_id)
            # judged again when the cache shows a change: a VM moved back here may meet the
            # late DOWN of the host it left (that host saw its vNIC go before it saw the new
            # binding) after we said ACTIVE, and must not stay DOWN while it forwards here
            if port_id in self.stats.ports_active and self._judged.get(port_id) == port:
                continue
            if port is not None and port.status != "ACTIVE":
                report[port_id] = "ACTIVE"
            judged[port_id] = port
        gone = sorted(self.stats.ports_active - bound_ids)
        for port_id in gone:
            port = self.cache.ports.get(port_id)
            # a port that moved to another host (a live migration) is that host's to report:
            # our DOWN, late, would overwrite its ACTIVE (Neutron's update_device_down
            # likewise ignores a device not bound to the reporting agent's host)
            if port is not None and port.host == self.conf.host:
                report[port_id] = "DOWN"
        if report:
            missing = self.controller.set_port_statuses(report)
            for port_id in sorted(missing):
                # deleted since our last event (a DHCP agent unplugs, then deletes its
                # port): nothing to report, and no reason to stop the agent
                log.info("port %s is gone; not reporting it %s", port_id, report[port_id])
        for port_id, port in judged.items():
            self.stats.ports_active.add(port_id)
            if port is not None:
                self._judged[port_id] = port
        for port_id in gone:
            self.stats.ports_active.discard(port_id)
            self._judged.pop(port_id, None)

    def _talk_to_controller(self, wait: float) -> None:
        now = time.monotonic()
        if not self._registered:
            self.controller.register_agent(self.conf.host, self.conf.tunnel_ip,
                                           sorted(self.conf.tunnel_types), self.bridge_mappings)
            self._registered = True
            self._last_heartbeat = now
        if now - self._last_heartbeat >= self.timers.heartbeat_interval or self._report_due:
            self.controller.heartbeat(self.conf.host,
                                      self._tunnel_report if self.bfd is not None else None)
            self._last_heartbeat = now
            self._report_due = False
        if not self._synced:
            if self._poller is not None:
                self._poller.stop()  # its answers are from before this listing
            self.cache.load(self.controller.snapshot())
            self.stats.snapshots += 1
            self._synced = True
            log.info("synced with controller at revision %d", self.cache.revision)
            return
        self._complete_networks()  # one a failed contact left incomplete
        for event in self._events(wait):
            self.cache.apply(event)
        self._complete_networks()

    def _events(self, wait: float) -> list[Event]:
        """The controller's events after our revision: a poll of up to `wait` seconds, or
        with the poller what it has brought within `wait` (raising the error that ended its
        poll, as the poll would have)."""
        poller = self._poller
        if poller is None:
            return self.controller.watch(self.cache.revision, wait)
        if not poller.running:
            poller.start(self.cache.revision)
        else:
            poller.want()
        events: list[Event] = []
        deadline = time.monotonic() + wait
        while True:
            try:
                generation, answer = poller.answers.get(
                    timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return events
            if generation != poller.generation:
                continue  # asked before a resync or an outage: stale
            if isinstance(answer, TunnelnetError):
                if events:
                    # apply what came first; the poller, stopped, is started again from
                    # after them next round and meets the error again if it lasts
                    return events
                raise answer
            events.extend(answer)
            deadline = 0.0  # take what is queued already, and go on with the round

    def _complete_networks(self) -> None:
        """List each network we have just got a port on: the controller sends us a
        network's events only from then on; and with l2pop, forget the peers that left our
        networks (agent/controller.py)."""
        for network_id in sorted(self.cache.incomplete()):
            network, ports = self.controller.list_network(network_id, self.cache.revision)
            self.cache.merge_network(network_id, ports, network)
            self.stats.network_listings += 1
        if self.cache.following_peers:
            self.cache.prune_peers()

    @property
    def controller_reachable(self) -> bool:
        return self._outage_since is None

    def _contact(self) -> None:
        """One exchange with the controller when it is due; outages are noted, not raised."""
        now = time.monotonic()
        if now < self._next_contact:
            time.sleep(min(self.timers.poll_interval, self._next_contact - now))
            return
        wait = SWITCH_RETRY if self._switch_retry else self.timers.poll_interval
        self._switch_retry = False
        try:
            self._talk_to_controller(wait)
        except ResyncRequired as exc:
            # not an outage: the controller no longer keeps the changes after our revision
            # (compacted), or never had them (its database was replaced). List everything
            # again at once; the switch keeps its flows until the new view is planned.
            log.info("controller asks for a resync from revision %d: %s",
                     self.cache.revision, exc)
            self.stats.resyncs += 1
            self._synced = False
            self._answered(now)
        except TunnelnetError as exc:
            # ResyncRequired is a TunnelnetError too: it must be caught above, first
            self._unanswered(now, exc)
            time.sleep(min(self.timers.poll_interval, self._backoff))
        else:
            self._answered(now)

    def _answered(self, now: float) -> None:
        self._backoff = 0.0
        if self._outage_since is not None:
            log.warning("a controller answers again after %.1fs without one; resuming from "
                        "revision %d", now - self._outage_since, self.cache.revision)
            self._outage_since = None

    def _unanswered(self, now: float, exc: TunnelnetError) -> None:
        self.stats.controller_errors += 1
        self._backoff = min(max(self._backoff * 2, 0.5), self.timers.max_backoff)
        self._next_contact = now + self._backoff
        if self._outage_since is None:
            # said once per outage: a log line per retry would bury everything else
            self._outage_since = now
            self.stats.outages += 1
            log.warning("no controller answers (%s): keeping the datapath as it is and "
                        "changing no flow until one does; retrying", exc)
        else:
            log.debug("still no controller (%s); retry in %.1fs", exc, self._backoff)

    def run_round(self) -> None:
        self._contact()
        if not self._synced:
            return  # never program from an empty view: that would tear down every network
        if self._outage_since is not None and not self._switch_lost_flows():
            return  # nothing changes while no controller answers (see the module's doc)
        try:
            self.converge()
            if self._outage_since is None:
                self._report_port_status(self._bound)
        except BackendError as exc:
            log.warning("switch request failed (%s); will reprogram", exc)
            self._bridges_ready = False
            # a new generation, swept as at a start: the failed round may have left flows
            # we no longer want (a vNIC's former port number) that a plain re-apply keeps
            self.cookie = random.getrandbits(63) | 1
            for applier in (self.int_flows, self.tun_flows, *self.phys_flows.values()):
                applier.new_generation(self.cookie)
            self._planned_from = None  # and the next round plans again, whatever it reads
            self._tunnels_from = None
            self._switch_retry = True
        except TunnelnetError as exc:
            # a port status report that found no controller: reported in a later round
            self._unanswered(time.monotonic(), exc)
        self.stats.rounds += 1

    def _switch_lost_flows(self) -> bool:
        try:
            return not self._bridges_ready or self._switch_restarted()
        except BackendError:
            return True  # the switch is away; converge() will say so and retry

    def run(self, stop: threading.Event) -> None:
        log.info("agent %s starting (tunnel IP %s, types %s, l2pop %s, cookie %#x)",
                 self.conf.host, self.conf.tunnel_ip, ",".join(sorted(self.conf.tunnel_types)),
                 self.conf.l2pop, self.cookie)
        while not stop.is_set():
            self.run_round()
