"""A lab hypervisor that runs Open vSwitch (userspace ``netdev`` datapath) instead of our
vswitchd, driven by the very same agent (``--switch ovs``).

Open vSwitch's own daemons run in the hypervisor's namespace with a private run directory
(its database, control and bridge sockets), never the system's. Its native tunnelling needs
the underlay address on a netdev bridge holding the uplink, so the hypervisor's address moves
from eth0 to ``br-phy``, as on an Open vSwitch host with userspace tunnelling.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tunnelnet.agent.tunnels import parse_tunnel_port_name
from tunnelnet.errors import TunnelnetError

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
PHYSICAL_BRIDGE = "br-phy"


class OvsHostError(TunnelnetError):
    """Open vSwitch could not be set up on a lab hypervisor."""


def ovs_env(rundir: Path) -> dict[str, str]:
    return {"OVS_RUNDIR": str(rundir), "OVS_LOGDIR": str(rundir), "OVS_DBDIR": str(rundir)}


def _run(argv: list[str], rundir: Path, netns: str | None = None) -> str:
    cmd = [*(["ip", "netns", "exec", netns] if netns else []), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, **ovs_env(rundir)})
    if proc.returncode != 0:
        raise OvsHostError(f"{' '.join(argv[:3])}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def vsctl(rundir: Path, *args: str) -> str:
    return _run(["ovs-vsctl", f"--db=unix:{rundir}/db.sock", "--timeout=10", *args], rundir)


def create_db(rundir: Path) -> None:
    if not SCHEMA.exists():
        raise OvsHostError(f"{SCHEMA} is missing: install openvswitch-switch (make test "
                           "does as root)")
    (rundir / "conf.db").unlink(missing_ok=True)
    _run(["ovsdb-tool", "create", str(rundir / "conf.db"), str(SCHEMA)], rundir)


def db_server_argv(rundir: Path) -> list[str]:
    return ["ovsdb-server", f"--remote=punix:{rundir}/db.sock",
            f"--unixctl={rundir}/ovsdb-server.ctl", f"--pidfile={rundir}/ovsdb-server.pid",
            f"--log-file={rundir}/ovsdb-server.log", "--no-chdir", "-vconsole:off",
            str(rundir / "conf.db")]


def vswitchd_argv(rundir: Path) -> list[str]:
    return ["ovs-vswitchd", f"unix:{rundir}/db.sock", f"--unixctl={rundir}/ovs-vswitchd.ctl",
            f"--pidfile={rundir}/ovs-vswitchd.pid", f"--log-file={rundir}/ovs-vswitchd.log",
            "--no-chdir", "-vconsole:off"]


def move_uplink_to_br_phy(rundir: Path, netns: str, uplink: str, address: str) -> None:
    """The hypervisor's underlay address lives on br-phy, which holds the uplink."""
    vsctl(rundir, "--may-exist", "add-br", PHYSICAL_BRIDGE, "--", "set", "bridge",
          PHYSICAL_BRIDGE, "datapath_type=netdev", "--", "--may-exist", "add-port",
          PHYSICAL_BRIDGE, uplink)
    _run(["ip", "addr", "flush", "dev", uplink], rundir, netns)
    _run(["ip", "addr", "add", address, "dev", PHYSICAL_BRIDGE], rundir, netns)
    _run(["ip", "link", "set", PHYSICAL_BRIDGE, "up"], rundir, netns)


def plug(rundir: Path, tap: str, port_id: str, mac: str) -> None:
    """What Nova does on an Open vSwitch host: on the dead VLAN until the agent binds it."""
    vsctl(rundir, "--may-exist", "add-port", "br-int", tap, "tag=4095", "--", "set",
          "Interface", tap, f"external_ids:iface-id={port_id}",
          f"external_ids:attached-mac={mac}", "external_ids:iface-status=active")


def has_bridge(rundir: Path, bridge: str) -> bool:
    return bridge in vsctl(rundir, "list-br").split()


def bfd_status(rundir: Path, ports: list[str]) -> dict[str, dict[str, str]]:
    """Each port's bfd_status column (empty: BFD off), as Open vSwitch writes it."""
    if not ports:
        return {}
    raw = json.loads(vsctl(rundir, "--format=json", "--columns=name,bfd_status", "list",
                          "Interface", *ports))
    found: dict[str, dict[str, str]] = {}
    for name, column in raw["data"]:
        pairs = column[1] if isinstance(column, list) and column[0] == "map" else []
        found[str(name)] = {str(k): str(v) for k, v in pairs}
    return found


def tunnel_ports(rundir: Path) -> list[str]:
    if not has_bridge(rundir, "br-tun"):
        return []
    return sorted(p for p in vsctl(rundir, "list-ports", "br-tun").split()
                  if parse_tunnel_port_name(p) is not None)
