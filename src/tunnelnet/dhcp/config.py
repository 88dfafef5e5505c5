"""What one network's dnsmasq is told, computed from the API's records: pure, no I/O.

As Neutron's DHCP agent does it: every DHCP-enabled IPv4 subnet is a *static* range (dnsmasq
answers only MACs named in the hosts file, so an unknown MAC or a deleted port gets nothing),
the hosts file maps each port's MAC to its fixed IP and a hostname, and the options file
carries each subnet's router, DNS servers and host routes under the subnet's tag. The MTU is
forced on the command line (option 26 is sent even to a client that did not ask for it), as
Neutron does, so a VM never meets the overlay's MTU black hole.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEVICE_OWNER = "network:dhcp"
LEASE_SECONDS = 86400  # Neutron's dhcp_lease_duration default


@dataclass(frozen=True, slots=True)
class Subnet:
    id: str
    cidr: str
    gateway_ip: str | None
    dns_nameservers: tuple[str, ...]
    host_routes: tuple[tuple[str, str], ...]  # (destination CIDR, next hop)

    @property
    def tag(self) -> str:
        return f"subnet-{self.id}"

    @classmethod
    def from_api(cls, doc: Mapping[str, Any]) -> Subnet:
        return cls(str(doc["id"]), str(doc["cidr"]), doc.get("gateway_ip") or None,
                   tuple(doc.get("dns_nameservers") or ()),
                   tuple((str(r["destination"]), str(r["nexthop"]))
                         for r in doc.get("host_routes") or ()))


@dataclass(frozen=True, slots=True)
class Host:
    mac: str
    ip: str
    hostname: str
    port_id: str


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """Everything one network's dnsmasq needs; equal configs mean nothing to do."""

    network_id: str
    mtu: int
    subnets: tuple[Subnet, ...]
    hosts: tuple[Host, ...]


def serves(subnet: Mapping[str, Any]) -> bool:
    """DHCP is served on IPv4 subnets with enable_dhcp (no DHCPv6 here, as subnets say)."""
    return bool(subnet.get("enable_dhcp", True)) and int(subnet.get("ip_version", 4)) == 4


def hostname(ip: str) -> str:
    """Neutron's name for a port without dns_name: ``host-10-0-0-3``."""
    return "host-" + ip.replace(".", "-")


def network_config(network: Mapping[str, Any], subnets: Iterable[Mapping[str, Any]],
                   ports: Iterable[Mapping[str, Any]]) -> NetworkConfig | None:
    """The config of ``network`` from its subnets and ports (others are ignored); None when
    it has no subnet to serve (then it needs no DHCP port and no dnsmasq)."""
    net_id = str(network["id"])
    served = sorted((Subnet.from_api(s) for s in subnets
                     if s.get("network_id") == net_id and serves(s)), key=lambda s: s.id)
    if not served:
        return None
    ids = {s.id for s in served}
    hosts = sorted(
        (Host(str(p["mac_address"]).lower(), str(ip["ip_address"]), hostname(ip["ip_address"]),
              str(p["id"]))
         for p in ports if p.get("network_id") == net_id and p.get("device_owner") != DEVICE_OWNER
         for ip in p.get("fixed_ips") or () if ip.get("subnet_id") in ids),
        key=lambda h: (h.mac, h.ip))
    return NetworkConfig(net_id, int(network.get("mtu") or 1500), tuple(served), tuple(hosts))


def hosts_file(config: NetworkConfig) -> str:
    """dnsmasq's --dhcp-hostsfile: ``MAC,IP,HOSTNAME`` per fixed IP.

    No ``set:port-ID`` tag as Neutron writes (it serves per-port extra DHCP options, which
    tunnelnet has not): dnsmasq 2.90, Debian 12's, dies of a segmentation fault on SIGHUP
    when a hosts-file line sets a tag and a lease is held."""
    return "".join(f"{h.mac},{h.ip},{h.hostname}\n" for h in config.hosts)


def _routes_option(subnet: Subnet) -> str | None:
    """Option 121 (RFC 3442) when the subnet has host routes. A client that gets 121 ignores
    option 3 (RFC 3442, section 'DHCP Client Behavior'), so the default route via the gateway
    goes into the list too, as Neutron adds it."""
    if not subnet.host_routes:
        return None
    routes = [f"{dest},{hop}" for dest, hop in subnet.host_routes]
    if subnet.gateway_ip and not any(d == "0.0.0.0/0" for d, _ in subnet.host_routes):
        routes.append(f"0.0.0.0/0,{subnet.gateway_ip}")
    return ",".join(routes)


def opts_file(config: NetworkConfig) -> str:
    """dnsmasq's --dhcp-optsfile: per subnet tag, the router, DNS servers and host routes.

    An option written with no value sends nothing: without it dnsmasq would offer its own
    address as router and DNS server, and this dnsmasq is neither (it runs with DNS off)."""
    lines: list[str] = []
    for s in config.subnets:
        lines.append(f"tag:{s.tag},option:router" + (f",{s.gateway_ip}" if s.gateway_ip else ""))
        lines.append(f"tag:{s.tag},option:dns-server"
                     + "".join(f",{d}" for d in s.dns_nameservers))
        routes = _routes_option(s)
        if routes is not None:
            lines.append(f"tag:{s.tag},option:classless-static-route,{routes}")
            # Windows asks for the same list under Microsoft's number (RFC 3442's draft)
            lines.append(f"tag:{s.tag},249,{routes}")
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True, slots=True)
class Paths:
    """Where one network's dnsmasq keeps its files (a directory of the DHCP agent's)."""

    directory: Path

    @property
    def hosts(self) -> Path:
        return self.directory / "host"

    @property
    def opts(self) -> Path:
        return self.directory / "opts"

    @property
    def leases(self) -> Path:
        return self.directory / "leases"

    @property
    def pid(self) -> Path:
        return self.directory / "pid"

    @property
    def log(self) -> Path:
        return self.directory / "dnsmasq.log"


def dnsmasq_argv(config: NetworkConfig, paths: Paths, interface: str,
                 binary: str = "dnsmasq") -> list[str]:
    """The command line: DHCP only (``--port=0``: no DNS), bound to the DHCP port's
    interface, one static range per subnet. A change here needs a restart; a change of the
    files only a SIGHUP."""
    argv = [binary, "--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts",
            "--no-resolv", "--port=0", "--bind-interfaces", f"--interface={interface}",
            "--except-interface=lo", f"--pid-file={paths.pid}",
            f"--dhcp-hostsfile={paths.hosts}", f"--dhcp-optsfile={paths.opts}",
            f"--dhcp-leasefile={paths.leases}", f"--log-facility={paths.log}", "--log-dhcp"]
    for s in config.subnets:
        net = ipaddress.IPv4Network(s.cidr)
        argv.append(f"--dhcp-range=set:{s.tag},{net.network_address},static,{net.netmask},"
                    f"{LEASE_SECONDS}s")
    # one lease per address of the ranges at most (dnsmasq's default cap is 1000)
    addresses = sum(ipaddress.IPv4Network(s.cidr).num_addresses for s in config.subnets)
    argv.append(f"--dhcp-lease-max={addresses}")
    argv.append(f"--dhcp-option-force=option:mtu,{config.mtu}")
    return argv


def released(old: NetworkConfig | None, new: NetworkConfig | None) -> list[Host]:
    """Hosts whose (MAC, IP) the new config no longer has: their leases must be released,
    or dnsmasq keeps the address for the old MAC and refuses it to its next owner."""
    keep = {(h.mac, h.ip) for h in (new.hosts if new else ())}
    return [h for h in (old.hosts if old else ()) if (h.mac, h.ip) not in keep]


def dhcp_port_ips(port: Mapping[str, Any], subnets: Sequence[Subnet]) -> list[tuple[str, int]]:
    """The DHCP port's (address, prefix length) on the served subnets, for its interface."""
    by_id = {s.id: ipaddress.IPv4Network(s.cidr).prefixlen for s in subnets}
    return [(str(ip["ip_address"]), by_id[ip["subnet_id"]])
            for ip in port.get("fixed_ips") or () if ip.get("subnet_id") in by_id]
