"""The DHCP agent: list and watch the controller, and give every network that has a
DHCP-enabled subnet a DHCP port, a namespace behind it on br-int and a dnsmasq in it.

Neutron's DHCP agent, in small: the port is created through the API (``device_owner``
``network:dhcp``, ``device_id`` ``dhcp<uuid5(host)>-<network id>``, bound to this host, one
address per served subnet), so the Open vSwitch agent binds it like a VM's port and l2pop
builds the tunnels to it; the dnsmasq's hosts and options files are written from the API's
ports and subnets and reloaded when they change. A network that no longer has a subnet to
serve loses its dnsmasq, namespace and port. This agent serves every network (one DHCP agent
per cloud; Neutron's scheduler, which spreads networks over several, is not here).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunnelnet.api import NotFoundError, ResyncRequired
from tunnelnet.api.agent_types import DHCP_AGENT
from tunnelnet.api.snapshot import Resource
from tunnelnet.client.http import Client
from tunnelnet.dhcp import plumbing
from tunnelnet.dhcp.config import DEVICE_OWNER, NetworkConfig, Paths, dhcp_port_ips, network_config
from tunnelnet.dhcp.dnsmasq import Dnsmasq
from tunnelnet.errors import TunnelnetError

log = logging.getLogger(__name__)

AGENT_TYPE = DHCP_AGENT


@dataclass(frozen=True, slots=True)
class DhcpAgentConfig:
    host: str
    state_dir: Path  # one directory per network for dnsmasq's files
    netns_prefix: str = ""  # before qdhcp-<network id>
    host_netns: str | None = None  # where the switch's ports live (None: ours)
    dnsmasq: str = "dnsmasq"
    poll_interval: float = 0.5
    heartbeat_interval: float = 5.0
    max_backoff: float = 8.0


def device_id(host: str, network_id: str) -> str:
    """Neutron's device_id of a DHCP port: the agent's host as a UUID, and the network."""
    return f"dhcp{uuid.uuid5(uuid.NAMESPACE_DNS, host)}-{network_id}"


@dataclass
class Served:
    """One network this agent serves: what is made for it on this host."""

    port_id: str
    namespace: str
    dnsmasq: Dnsmasq
    wired: tuple[str, int, tuple[tuple[str, int], ...]] | None = None  # (mac, mtu, addresses)


@dataclass
class Cache:
    networks: dict[str, Resource] = field(default_factory=dict)
    subnets: dict[str, Resource] = field(default_factory=dict)
    ports: dict[str, Resource] = field(default_factory=dict)
    revision: int = 0

    def load(self, client: Client) -> None:
        snap = client.snapshot()
        self.networks = {str(n["id"]): n for n in snap.networks}
        self.subnets = {str(s["id"]): s for s in snap.subnets}
        self.ports = {str(p["id"]): p for p in snap.ports}
        self.revision = snap.revision

    def apply(self, resource: str, action: str, obj: Mapping[str, Any], revision: int) -> None:
        table = {"network": self.networks, "subnet": self.subnets,
                 "port": self.ports}.get(resource)
        if table is not None:
            if action == "delete":
                table.pop(str(obj["id"]), None)
            else:
                table[str(obj["id"])] = dict(obj)
        self.revision = max(self.revision, revision)


class DhcpAgent:
    def __init__(self, conf: DhcpAgentConfig, client: Client, plug: plumbing.SwitchPlug
                 ) -> None:
        self.conf = conf
        self.client = client
        self.plug = plug
        self.cache = Cache()
        self.served: dict[str, Served] = {}
        self._synced = False
        self._agent_id: str | None = None
        self._last_heartbeat = 0.0
        self._backoff = 0.0
        self._dirty = True
        self._next_check = 0.0

    # -- controller side --------------------------------------------------------------------

    def _talk(self, wait: float) -> None:
        now = time.monotonic()
        if self._agent_id is None:
            agent = self.client.register_agent(self.conf.host, agent_type=AGENT_TYPE,
                                               tunnel_types=())
            self._agent_id = str(agent["id"])
            self._last_heartbeat = now
        elif now - self._last_heartbeat >= self.conf.heartbeat_interval:
            self.client.heartbeat(self._agent_id)
            self._last_heartbeat = now
        if not self._synced:
            self.cache.load(self.client)
            self._synced = self._dirty = True
            log.info("synced with the controller at revision %d", self.cache.revision)
            return
        records, revision = self.client.events(self.cache.revision, timeout=wait)
        for r in records:
            if r.type == "event" and r.resource and r.action and r.object is not None:
                self.cache.apply(r.resource, r.action, r.object, r.revision)
                self._dirty = self._dirty or r.resource in ("network", "subnet", "port")
        self.cache.revision = max(self.cache.revision, revision)

    # -- one network ------------------------------------------------------------------------

    def _our_port(self, network_id: str) -> Resource | None:
        wanted = device_id(self.conf.host, network_id)
        return next((p for p in self.cache.ports.values()
                     if p.get("network_id") == network_id and p.get("device_id") == wanted
                     and p.get("device_owner") == DEVICE_OWNER), None)

    def _ensure_port(self, network: Resource, config: NetworkConfig) -> Resource:
        """The network's DHCP port, with an address on each served subnet."""
        served = [s.id for s in config.subnets]
        port = self._our_port(config.network_id)
        if port is None:
            port = self.client.create(
                "port", network_id=config.network_id, project_id=network.get("project_id"),
                name="", device_owner=DEVICE_OWNER,
                device_id=device_id(self.conf.host, config.network_id),
                fixed_ips=[{"subnet_id": s} for s in served],
                **{"binding:host_id": self.conf.host})
            log.info("network %s: created DHCP port %s", config.network_id, port["id"])
        else:
            have = [ip for ip in port.get("fixed_ips") or () if ip.get("subnet_id") in served]
            missing = [s for s in served if s not in {ip["subnet_id"] for ip in have}]
            if missing or len(have) != len(port.get("fixed_ips") or ()):
                port = self.client.update(
                    "port", str(port["id"]),
                    fixed_ips=[*have, *({"subnet_id": s} for s in missing)])
                log.info("network %s: DHCP port %s now on subnets %s", config.network_id,
                         port["id"], ", ".join(served))
        self.cache.ports[str(port["id"])] = port
        return port

    def _serve(self, network: Resource, config: NetworkConfig) -> None:
        port = self._ensure_port(network, config)
        port_id = str(port["id"])
        entry = self.served.get(config.network_id)
        if entry is not None and entry.port_id != port_id:
            self._unserve(config.network_id)
            entry = None
        if entry is None:
            ns = plumbing.namespace_name(self.conf.netns_prefix, config.network_id)
            paths = Paths(self.conf.state_dir / config.network_id)
            paths.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
            entry = Served(port_id, ns, Dnsmasq(ns, paths, plumbing.inner_name(port_id),
                                                self.conf.dnsmasq))
            self.served[config.network_id] = entry
        wired = (str(port["mac_address"]), config.mtu,
                 tuple(dhcp_port_ips(port, config.subnets)))
        if entry.wired != wired:
            tap, inner = plumbing.tap_name(port_id), plumbing.inner_name(port_id)
            plumbing.make_namespace(entry.namespace)
            plumbing.make_veth(self.conf.host_netns, tap, entry.namespace, inner,
                               mac=wired[0], mtu=config.mtu)
            plumbing.set_addresses(entry.namespace, inner, wired[2])
            self.plug.plug(tap, port_id, wired[0])
            entry.wired = wired
            log.info("network %s: DHCP port %s wired in %s (%s)", config.network_id, port_id,
                     entry.namespace, ", ".join(f"{a}/{p}" for a, p in wired[2]))
        action = entry.dnsmasq.apply(config)
        if action != "unchanged":
            log.info("network %s: dnsmasq %s (%d hosts)", config.network_id, action,
                     len(config.hosts))

    def _unserve(self, network_id: str) -> None:
        """Stop serving one network on this host (its port on the controller stays)."""
        entry = self.served.pop(network_id, None)
        if entry is None:
            return
        entry.dnsmasq.stop()
        self.plug.unplug(plumbing.tap_name(entry.port_id))
        plumbing.remove_namespace(entry.namespace)
        log.info("network %s: no longer served here", network_id)

    # -- rounds -----------------------------------------------------------------------------

    def converge(self) -> None:
        wanted: dict[str, NetworkConfig] = {}
        for net_id, network in self.cache.networks.items():
            config = network_config(network, self.cache.subnets.values(),
                                    self.cache.ports.values())
            if config is not None and network.get("admin_state_up", True):
                wanted[net_id] = config
        for net_id in sorted(set(self.served) - set(wanted)):
            self._unserve(net_id)
        # DHCP ports of ours on networks with nothing to serve go (Neutron releases them)
        for port in list(self.cache.ports.values()):
            net_id = str(port.get("network_id"))
            if (net_id not in wanted and port.get("device_owner") == DEVICE_OWNER
                    and port.get("device_id") == device_id(self.conf.host, net_id)):
                # gone already if its network was deleted with it
                with contextlib.suppress(NotFoundError):
                    self.client.delete("port", str(port["id"]))
                self.cache.ports.pop(str(port["id"]), None)
                log.info("network %s: deleted DHCP port %s (no DHCP subnet left)", net_id,
                         port["id"])
        for net_id, config in sorted(wanted.items()):
            try:
                self._serve(self.cache.networks[net_id], config)
            except TunnelnetError as exc:
                # one network's trouble must not stop the others being served
                log.warning("network %s: %s; will retry", net_id, exc)
                self._dirty = True

    def run_round(self) -> None:
        try:
            self._talk(self.conf.poll_interval)
            self._backoff = 0.0
        except ResyncRequired as exc:
            log.info("controller asks for a resync from revision %d: %s",
                     self.cache.revision, exc)
            self._synced = False
            return
        except TunnelnetError as exc:
            self._backoff = min(max(self._backoff * 2, 0.5), self.conf.max_backoff)
            log.warning("controller unreachable (%s); dnsmasq keeps serving, retry in %.1fs",
                        exc, self._backoff)
            time.sleep(self._backoff)
            return
        if not self._synced:
            return  # never act on an empty view: that would tear every network down
        now = time.monotonic()
        # now and then even without news: a dnsmasq that died is started again
        if not self._dirty and now < self._next_check:
            return
        self._dirty, self._next_check = False, now + self.conf.heartbeat_interval
        try:
            self.converge()
        except TunnelnetError as exc:
            log.warning("converging failed (%s); will retry", exc)
            self._dirty = True
            time.sleep(self.conf.poll_interval)

    def run(self, stop: threading.Event) -> None:
        log.info("DHCP agent %s starting (state in %s)", self.conf.host, self.conf.state_dir)
        try:
            while not stop.is_set():
                self.run_round()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop every dnsmasq and remove every namespace made here; the DHCP ports stay on
        the controller, so a restarted agent finds and reuses them."""
        for net_id in sorted(self.served):
            try:
                self._unserve(net_id)
            except TunnelnetError as exc:
                log.warning("network %s: cleaning up: %s", net_id, exc)
