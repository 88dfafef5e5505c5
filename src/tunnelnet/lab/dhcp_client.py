"""A lab VM asks DHCP for its address with a real client (busybox ``udhcpc``), as a cloud
image does at boot, and the lab applies what the lease says: address and mask, MTU (option
26), default route (option 3) and host routes (option 121).

udhcpc hands each lease to a script in environment variables; ours only writes them down
(``KEY=VALUE`` lines) and the lab applies them through netlink, so the VM's configuration is
exactly the lease's, and a test can read the lease the server sent.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from tunnelnet.errors import TunnelnetError

# the hook udhcpc runs; $1 is the event (deconfig, bound, renew, leasefail, nak)
SCRIPT = """#!/bin/sh
# tunnelnet lab: write the lease down; the lab applies it
# (without a lease file to write, e.g. run by hand, nothing: never a stray file in the cwd)
[ -n "$TUNNELNET_LEASE_FILE" ] || exit 0
case "$1" in
  bound|renew) env > "$TUNNELNET_LEASE_FILE.tmp" && mv "$TUNNELNET_LEASE_FILE.tmp" \
"$TUNNELNET_LEASE_FILE" ;;
esac
exit 0
"""


class DhcpClientError(TunnelnetError):
    """No lease was obtained, or it could not be applied."""


@dataclass(frozen=True, slots=True)
class Lease:
    ip: str
    prefixlen: int
    router: str | None
    mtu: int | None
    dns: tuple[str, ...]
    routes: tuple[tuple[str, str], ...]  # option 121: (destination CIDR, next hop)
    server: str | None
    hostname: str | None


def parse_lease(text: str) -> Lease:
    """The lease from udhcpc's environment (``ip``, ``subnet`` as a dotted mask, ``router``,
    ``mtu``, ``dns``, ``staticroutes`` as ``CIDR GW CIDR GW ...``, ``serverid``)."""
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if "ip" not in env or "subnet" not in env:
        raise DhcpClientError("the lease has no address or mask")
    prefix = ipaddress.IPv4Network(f"0.0.0.0/{env['subnet']}").prefixlen
    words = env.get("staticroutes", "").split()
    routes = tuple(zip(words[0::2], words[1::2], strict=False))
    router = env.get("router", "").split()
    return Lease(ip=env["ip"], prefixlen=prefix, router=router[0] if router else None,
                 mtu=int(env["mtu"]) if env.get("mtu") else None,
                 dns=tuple(env.get("dns", "").split()), routes=routes,
                 server=env.get("serverid") or None, hostname=env.get("hostname") or None)


def udhcpc_argv(interface: str, script: Path, *, tries: int, timeout: int) -> list[str]:
    """One exchange and out (``-q``): ``tries`` discovers ``timeout`` seconds apart, then
    give up (``-n``). Option 121 is asked for; 26 the server sends unasked (forced)."""
    return ["udhcpc", "-i", interface, "-f", "-q", "-n", "-t", str(tries), "-T", str(timeout),
            "-A", "1", "-s", str(script), "-O", "staticroutes"]


def start(netns: str, interface: str, lease_file: Path, *, tries: int = 5,
          timeout: int = 2) -> subprocess.Popen[bytes]:
    """Start the client in the VM's namespace; :func:`finish` waits for it."""
    script = lease_file.with_suffix(".sh")
    script.write_text(SCRIPT)
    script.chmod(0o700)
    lease_file.unlink(missing_ok=True)
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, *udhcpc_argv(interface, script, tries=tries,
                                                     timeout=timeout)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TUNNELNET_LEASE_FILE": str(lease_file)})


def finish(proc: subprocess.Popen[bytes], lease_file: Path, what: str,
           wait: float = 60.0) -> Lease:
    """The lease the client got, or DhcpClientError with the client's own words."""
    try:
        out, _ = proc.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    if proc.returncode != 0 or not lease_file.exists():
        words = out.decode(errors="replace").strip().splitlines()[-3:]
        raise DhcpClientError(f"{what}: no DHCP lease ({'; '.join(words)})")
    return parse_lease(lease_file.read_text())


def apply(netns: str, interface: str, lease: Lease) -> None:
    """Configure the interface as the lease says (address, MTU, routes)."""
    try:
        with IPRoute(netns=netns) as ip:
            idx = int(ip.link_lookup(ifname=interface)[0])
            if lease.mtu:
                ip.link("set", index=idx, mtu=lease.mtu)
            ip.addr("replace", index=idx, address=lease.ip, prefixlen=lease.prefixlen)
            for destination, hop in lease.routes:
                ip.route("replace", dst=destination, gateway=hop, oif=idx)
            if lease.router and not lease.routes:
                # RFC 3442: with option 121 the client ignores option 3
                ip.route("replace", dst="0.0.0.0/0", gateway=lease.router, oif=idx)
    except (NetlinkError, IndexError) as exc:
        raise DhcpClientError(f"cannot apply the lease to {netns}/{interface}: {exc}") from exc
