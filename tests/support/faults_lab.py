"""A namespace lab for issue 21's faults, driven and read from outside its daemons.

topologies/faults.toml: tenants red (VXLAN) and blue (GRE) with equal addresses, one VM of
each on hv1 and hv2, hv3 empty. The lab is made by ``tunnelnet lab up`` under its own prefix
and run directory; its daemons are killed and started by the pids the lab recorded. Switches
are read over their control sockets (the same requests `tunnelnet ofctl`/`vsctl` send, without
a Python start per read, which the 2-second checks cannot afford).

Extra "VMs" are vNICs without a guest: a port created through the API and bound to a
hypervisor, and an internal port on that hypervisor's br-int with ``iface-id`` = the port's
id, plugged on the dead VLAN as Nova's os-vif plugs one. To the agent they are VMs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tunnelnet.client.http import Client
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.control import ControlClient
from tunnelnet.errors import TunnelnetError
from tunnelnet.lab.runner import LabRunner
from tunnelnet.lab.state import StateFile

TOPOLOGY = Path(__file__).resolve().parents[1] / "adversarial" / "topologies" / "faults.toml"
HYPERVISORS = ("hv1", "hv2", "hv3")
DEAD_VLAN = 4095  # os-vif plugs a vNIC here until its agent binds it (Neutron's DEAD_VLAN_TAG)
CANARY_TABLE = 23  # Neutron's CANARY_TABLE: its flow's absence means the switch lost its flows
_COOKIE = re.compile(r"cookie=(0x[0-9a-f]+)")
_TABLE = re.compile(r"\btable=(\d+)")
_STATS = re.compile(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, ")


class LabError(RuntimeError):
    """The lab or one of its daemons did not do what the test needs to go on."""


def wait_for(what: str, ok: Callable[[], bool], timeout: float, interval: float = 0.05
             ) -> float:
    """Seconds until ``ok()``; raises LabError after ``timeout``."""
    start = time.monotonic()
    while True:
        try:
            if ok():
                return time.monotonic() - start
        except (TunnelnetError, OSError):
            pass
        if time.monotonic() - start > timeout:
            raise LabError(f"{what}: not after {timeout:.0f} s")
        time.sleep(interval)


def cookie_of(line: str) -> int:
    found = _COOKIE.search(line)
    return int(found.group(1), 16) if found else 0


def table_of(line: str) -> int:
    found = _TABLE.search(line)
    return int(found.group(1)) if found else 0


def bare(line: str) -> str:
    """A flow line without its cookie and counters: what it matches and does."""
    return _STATS.sub("", _COOKIE.sub("", line)).strip(" ,")


class FaultLab:
    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self.env = {**os.environ, "TUNNELNET_LAB_PREFIX": prefix,
                    "TUNNELNET_LAB_DIR": str(directory)}
        self.state: dict[str, Any] = {}
        self.proxies: list[Any] = []  # relays (late_proxy) that must outlive the agents

    # -- the lab as a whole -----------------------------------------------------------------

    def tn(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tunnelnet", *args], capture_output=True,
                              text=True, timeout=timeout, check=False, env=self.env)

    def up(self) -> None:
        done = self.tn("lab", "up", str(TOPOLOGY), "--arp-responder", timeout=300)
        if done.returncode != 0:
            raise LabError(f"lab up failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        self.reload()

    def down(self) -> subprocess.CompletedProcess[str]:
        try:
            return self.tn("lab", "down", timeout=240)
        finally:
            for proxy in self.proxies:
                proxy.close()

    def reload(self) -> None:
        self.state = json.loads((self.directory / "state.json").read_text())

    def vm(self, name: str) -> dict[str, Any]:
        vm: dict[str, Any] = self.state["vms"][name]
        return vm

    def rundir(self, hv: str) -> Path:
        return Path(self.state["hypervisors"][hv]["rundir"])

    def hv_of_ip(self) -> dict[str, str]:
        return {info["ip"]: hv for hv, info in self.state["hypervisors"].items()}

    def api(self, timeout: float = 15.0) -> Client:
        return Client(self.state["server_url"], self.state["admin_token"], timeout=timeout)

    def network_id(self, name: str) -> str:
        return str(self.state["networks"][name]["id"])

    def segment(self, name: str) -> int:
        return int(self.state["networks"][name]["segment"])

    # -- daemons ----------------------------------------------------------------------------

    def pid(self, daemon: str) -> int:
        self.reload()
        for proc in self.state["processes"]:
            if proc["name"] == daemon:
                return int(proc["pid"])
        raise LabError(f"the lab has no daemon {daemon}")

    def kill(self, daemon: str) -> None:
        """SIGKILL, and wait until it is gone (the lab's daemons are not our children)."""
        pid = self.pid(daemon)
        os.kill(pid, signal.SIGKILL)
        wait_for(f"{daemon} (pid {pid}) gone", lambda: not _alive(pid), 10)

    def start(self, daemon: str) -> None:
        """What ``lab start DAEMON`` does (the recorded command line, in its namespace), from
        this process: a supervisor restarting a daemon does not pay a CLI's start-up first
        (nor, imported here at the first restart, 1-2 s of the runner's imports)."""
        LabRunner(self.directory).start_process(daemon)

    def set_argv(self, daemon: str, edit: Callable[[list[str]], list[str]]) -> None:
        """Change the command line ``lab start`` gives a stopped daemon (the lab's record)."""
        store = StateFile(self.directory)
        state = store.load()
        for proc in state.processes:
            if proc.name == daemon:
                proc.argv = edit(list(proc.argv))
        store.save(state)

    # -- switches ---------------------------------------------------------------------------

    def call(self, hv: str, request: m.Request, timeout: float = 10.0) -> Any:
        with ControlClient(self.rundir(hv), timeout=timeout) as ctl:
            return ctl.call(request)

    def answers(self, hv: str) -> bool:
        try:
            self.call(hv, m.Ping(), timeout=1.0)
            return True
        except (TunnelnetError, OSError):
            return False

    def flows(self, hv: str, bridge: str, match: str = "") -> list[str]:
        """``dump-flows BRIDGE [MATCH]`` without counters (MATCH selects as ovs-ofctl's)."""
        return [str(line).strip()
                for line in self.call(hv, m.DumpFlows(bridge, match, stats=False))]

    def ports(self, hv: str, bridge: str) -> list[dict[str, Any]]:
        return list(self.call(hv, m.ListPorts(bridge)))

    def bridges(self, hv: str) -> list[dict[str, Any]]:
        return list(self.call(hv, m.Show()))

    def canary_cookie(self, hv: str) -> int | None:
        """The cookie of br-int's canary flow: the running agent generation's."""
        for line in self.flows(hv, "br-int"):
            if table_of(line) == CANARY_TABLE:
                return cookie_of(line)
        return None

    def cookies(self, hv: str, bridges: Iterable[str] = ("br-int", "br-tun")) -> set[int]:
        return {cookie_of(line) for bridge in bridges for line in self.flows(hv, bridge)}

    def tun_tables(self, hv: str, tables: Iterable[int] = (20, 21, 22)) -> list[str]:
        """br-tun's tables as the agent programs them: learned entries (hard_timeout, made by
        traffic through table 10's learn()) are left out, cookies and counters too."""
        wanted = set(tables)
        return sorted(bare(line) for line in self.flows(hv, "br-tun")
                      if table_of(line) in wanted and "hard_timeout=" not in line)

    # -- vNICs without guests ---------------------------------------------------------------

    def plug(self, hv: str, port: dict[str, Any], *, kind: str = "internal",
             name: str | None = None, ofport: int | None = None) -> str:
        tap = name or f"tap{port['id']}"[:14]
        self.call(hv, m.AddPort("br-int", tap, type=kind, tag=DEAD_VLAN, ofport=ofport,
                                external_ids={"iface-id": port["id"],
                                              "attached-mac": port["mac_address"],
                                              "iface-status": "active"}, may_exist=True))
        return tap

    def unplug(self, hv: str, tap: str) -> None:
        self.call(hv, m.DelPort("br-int", tap, if_exists=True))

    def create_port(self, api: Client, network: str, hv: str, name: str) -> dict[str, Any]:
        net = self.state["networks"][network]
        port: dict[str, Any] = api.create(
            "port", network_id=net["id"], project_id=net["tenant"], name=name,
            device_id=name, device_owner="compute:lab", **{"binding:host_id": hv})
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def dangling(flows: Iterable[str], ofports: set[int]) -> list[str]:
    """Flows that match on or output to a port number the bridge does not have."""
    bad = []
    for line in flows:
        numbers = [int(n) for n in re.findall(r"\bin_port=(\d+)", line)]
        numbers += [int(n) for n in re.findall(r"\boutput:(\d+)", line)]
        if any(n not in ofports for n in numbers):
            bad.append(line)
    return bad
