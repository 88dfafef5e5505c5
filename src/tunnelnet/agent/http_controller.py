"""The agent's controller, reached over the REST API with the typed client.

List-and-watch: one snapshot of networks, ports and agents read in a single transaction at
one revision, then long polls for the events after it. A 410 from the poll reaches the agent
as the API contract's ResyncRequired, raised by the client: the agent lists again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tunnelnet.agent.controller import Event, Snapshot
from tunnelnet.api import NotFoundError
from tunnelnet.api.agent_types import OVS_AGENT
from tunnelnet.client.http import Client

AGENT_TYPE = OVS_AGENT


class HttpController:
    def __init__(self, client: Client, *, l2pop: bool = False,
                 arp_responder: bool = False) -> None:
        self.client = client
        self.l2pop = l2pop
        self.arp_responder = arp_responder
        self.agent_id: str | None = None
        self._registration: tuple[str, str, Sequence[str], Mapping[str, str]] | None = None

    def register_agent(self, host: str, tunnel_ip: str, tunnel_types: Sequence[str],
                       bridge_mappings: Mapping[str, str]) -> None:
        self._registration = (host, tunnel_ip, tuple(tunnel_types), dict(bridge_mappings))
        agent = self.client.register_agent(
            host, tunneling_ip=tunnel_ip, tunnel_types=tunnel_types,
            bridge_mappings=bridge_mappings, l2_population=self.l2pop,
            arp_responder_enabled=self.arp_responder, agent_type=AGENT_TYPE)
        self.agent_id = str(agent["id"])

    def heartbeat(self, host: str) -> None:
        if self.agent_id is None:
            return
        try:
            self.client.heartbeat(self.agent_id)
        except NotFoundError:
            # an admin deleted our record (peers dropped their tunnels to us): we are still
            # here, so register again, as a restarted agent would
            if self._registration is not None:
                self.register_agent(*self._registration)

    def snapshot(self) -> Snapshot:
        snap = self.client.snapshot()
        agents = [a for a in snap.agents if a.get("agent_type", AGENT_TYPE) == AGENT_TYPE]
        return Snapshot(snap.networks, snap.ports, agents, snap.revision)

    def watch(self, since: int, timeout: float) -> list[Event]:
        # ResyncRequired (HTTP 410) goes up as it is: the agent tells it from an outage
        records, revision = self.client.events(since, timeout=max(timeout, 0.05))
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
        self.client.set_port_status(port_id, status)
