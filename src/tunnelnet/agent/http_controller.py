"""The agent's controller, reached over the REST API with the typed client.

List-and-watch: one snapshot of networks, ports and agents read in a single transaction at
one revision, then long polls for the events after it. A 410 from the poll reaches the agent
as the API contract's ResyncRequired, raised by the client: the agent lists again.

Given several controllers (one store behind them), the client moves to the next one when a
request fails or a poll breaks; revisions are the store's, so the agent's next poll asks the
new controller for the changes after the same revision, and no re-list is needed. Each move is
logged here, with the controller left and the one reached.

Once registered, the listing and the polls name the agent's host: the controller then sends
only what concerns it (its own ports, its networks and their ports, and with l2pop the agents
sharing a network with it: server/fanout.py); the agent lists a network itself when it gets
its first port there (`list_network`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from tunnelnet.agent.controller import Event, Snapshot
from tunnelnet.api import ClientError, NotFoundError
from tunnelnet.api.agent_types import OVS_AGENT
from tunnelnet.client.http import CONNECTION_LOST, Client

AGENT_TYPE = OVS_AGENT
T = TypeVar("T")

log = logging.getLogger(__name__)


class HttpController:
    def __init__(self, client: Client, *, l2pop: bool = False,
                 arp_responder: bool = False) -> None:
        self.client = client
        self.l2pop = l2pop
        self.arp_responder = arp_responder
        self.agent_id: str | None = None
        self._registration: tuple[str, str, Sequence[str], Mapping[str, str]] | None = None
        self.failovers = 0  # times the client moved on to another controller of its list
        self._answered_by: str | None = None
        self.host: str | None = None  # ours, once registered: what the controller sends us
        self._without_batch: set[str] = set()  # controllers older than PUT /v2.0/port_statuses

    def _call(self, request: Callable[[], T]) -> T:
        """`request`, noting which controller took it when that is not the last one.

        A request that reached a controller and broke (it died mid-answer, its watch was cut)
        or was answered 503 (that controller cannot reach the store) is asked once more at
        once: the client has moved on to the next controller, and all the agent asks is safe
        to repeat (reads, heartbeats, a status, a registration by host). One that reached no
        controller is not: every one was tried already."""
        try:
            result = request()
        except ClientError as exc:
            elsewhere = exc.error_type == CONNECTION_LOST or exc.status == 503
            if not elsewhere or len(self.client.urls) < 2:
                raise
            log.warning("%s; asking %s", exc, self.client.url)
            result = request()
        now = self.client.url
        if self._answered_by is not None and now != self._answered_by:
            self.failovers += 1
            log.warning("controller %s left behind: now talking to %s", self._answered_by, now)
        self._answered_by = now
        return result

    def register_agent(self, host: str, tunnel_ip: str, tunnel_types: Sequence[str],
                       bridge_mappings: Mapping[str, str]) -> None:
        self._registration = (host, tunnel_ip, tuple(tunnel_types), dict(bridge_mappings))
        self.host = host
        agent = self._call(lambda: self.client.register_agent(
            host, tunneling_ip=tunnel_ip, tunnel_types=tunnel_types,
            bridge_mappings=bridge_mappings, l2_population=self.l2pop,
            arp_responder_enabled=self.arp_responder, agent_type=AGENT_TYPE))
        self.agent_id = str(agent["id"])

    def heartbeat(self, host: str, tunnels: Sequence[Mapping[str, Any]] | None = None
                  ) -> None:
        if self.agent_id is None:
            return
        try:
            agent_id = self.agent_id
            self._call(lambda: self.client.heartbeat(agent_id, tunnels=tunnels))
        except NotFoundError:
            # an admin deleted our record (peers dropped their tunnels to us): we are still
            # here, so register again, as a restarted agent would
            if self._registration is not None:
                self.register_agent(*self._registration)

    def snapshot(self) -> Snapshot:
        snap = self._call(lambda: self.client.snapshot(host=self.host))
        # which controller, over which scheme: the one line an operator needs to see where the
        # agent's view came from (httpx's per-request lines are not logged)
        log.info("listed everything from %s at revision %d", self.client.url, snap.revision)
        agents = [a for a in snap.agents if a.get("agent_type", AGENT_TYPE) == AGENT_TYPE]
        return Snapshot(snap.networks, snap.ports, agents, snap.revision)

    def watch(self, since: int, timeout: float) -> list[Event]:
        # ResyncRequired (HTTP 410) goes up as it is: the agent tells it from an outage
        records, revision = self._call(
            lambda: self.client.events(since, timeout=max(timeout, 0.05), host=self.host))
        # another type's agent on a host (a DHCP agent) is no tunnel peer: its record must
        # not replace, or on delete remove, the Open vSwitch agent's of that host
        events = [Event(r.resource, r.action, r.object, r.revision) for r in records
                  if r.type == "event" and r.resource and r.action and r.object is not None
                  and (r.resource != "agent"
                       or r.object.get("agent_type", AGENT_TYPE) == AGENT_TYPE)]
        # nothing we can see changed up to `revision`: move on, so a later poll never asks
        # for a stretch of log that may have been compacted meanwhile
        events.append(Event("bookmark", "update", {}, revision))
        return events

    def set_port_status(self, port_id: str, status: str) -> None:
        self._call(lambda: self.client.set_port_status(port_id, status))

    def set_port_statuses(self, statuses: Mapping[str, str]) -> set[str]:
        """The round's statuses in one request; to a controller older than this agent (no
        PUT /v2.0/port_statuses: it answers 404 for the path itself, where the endpoint
        answers 200 and lists unknown ports under `not_found`), one request per port, as
        agents did before it. Which controllers lack it is kept, so each is asked once."""
        url = self.client.url
        if url not in self._without_batch:
            try:
                answer = self._call(lambda: self.client.set_port_statuses(statuses))
                return set(answer.get("not_found", ()))
            except NotFoundError:
                url = self.client.url
                self._without_batch.add(url)
                log.warning("controller %s has no PUT /v2.0/port_statuses (older than this "
                            "agent): reporting port statuses one port at a time", url)
        missing: set[str] = set()
        for port_id, status in statuses.items():
            try:
                self.set_port_status(port_id, status)
            except NotFoundError:
                missing.add(port_id)
        return missing

    def list_network(self, network_id: str, since: int
                     ) -> tuple[Mapping[str, Any] | None, Sequence[Mapping[str, Any]]]:
        return self._call(lambda: self.client.network_listing(network_id, since))
