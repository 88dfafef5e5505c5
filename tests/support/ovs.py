"""A private Open vSwitch 3.1 (userspace `netdev` datapath) for tests to use as a reference peer.

`OvsSwitch` starts its own ovsdb-server and ovs-vswitchd in a fresh temporary run directory and
in a network namespace, and tears down exactly what it started. It imports nothing from
tunnelnet: it is the independent judge the differential tests compare our switch with.

Why a namespace of its own by default: the netdev datapath creates a tap device named
`ovs-netdev` (and one tap per bridge) in the namespace it runs in, so two Open vSwitch instances
in one namespace collide ("creating tap device failed: Device or resource busy"). Pass `netns=`
to run inside a namespace you made (one instance per namespace), e.g. a lab hypervisor whose
uplink you want on a `br-phy` bridge.

Why `--enable-dummy`: ports of type `dummy` need no kernel device, so a table test can have as
many ports as it likes with known OpenFlow numbers (`ofport_request`).

Tunnel ports (`vxlan`, `gre`) on the netdev datapath only translate into datapath actions when
the remote IP is routable through a bridge that OVS knows (its native tunnelling); use
`add_underlay()` for that, and the trace then shows `tnl_push(...)` with the VNI or key each copy
leaves with.

Use (as root)::

    with OvsSwitch() as ovs:                      # or OvsSwitch(netns="tn-123-4")
        ovs.add_bridge("br-tun", fail_mode="secure")
        ovs.add_port("br-tun", "patch-int", 1, type="dummy")
        ovs.add_underlay(["192.0.2.2"])           # br-phy with 192.0.2.1/24 + static ARP
        ovs.add_tunnel_port("br-tun", "vxlan-c0000202", "vxlan", "192.0.2.2", 2)
        ovs.add_flows("br-tun", ["priority=1,in_port=1 actions=set_tunnel:0x64,output:2"])
        result = ovs.trace("br-tun", "in_port=1,dl_dst=ff:ff:ff:ff:ff:ff")
        result.visited       # [(0, 1)]: (table, priority) of each lookup
        result.outputs       # [PortOutput(ofport=2, tun_id=0x64, vlan=None, ...)]

In a caller's namespace the ports can be real devices there (`add_port(br, "veth0")`, no
type), e.g. a lab hypervisor's uplink on a `br-phy` with real VXLAN/GRE to its peers.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from support.ovs_trace_parse import (
    DatapathOutput,
    DpifPort,
    OvsTrace,
    parse_dpif_show,
    parse_trace,
)

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
TUNNEL_TYPES = frozenset({"vxlan", "gre", "geneve"})
ALL_OPENFLOW = "OpenFlow10,OpenFlow11,OpenFlow12,OpenFlow13,OpenFlow14,OpenFlow15"

_counter = itertools.count(1)


class OvsError(RuntimeError):
    """An Open vSwitch command failed or a daemon would not start; the message says which."""


@dataclass(frozen=True)
class PortInfo:
    bridge: str
    name: str
    ofport: int
    type: str
    options: Mapping[str, str]


@dataclass(frozen=True)
class PortOutput:
    """One copy the traced packet leaves with, in OpenFlow terms."""

    bridge: str  # bridge of the port (the traced bridge for its own and its tunnel ports)
    ofport: int
    name: str
    vlan: int | None  # VID of the 802.1Q tag it leaves with, None when untagged
    tun_id: int | None  # VNI / GRE key in the outer header; None for a non-tunnel port
    eth_src: str | None
    eth_dst: str | None
    arp: Mapping[str, str] = field(default_factory=dict)  # ARP fields rewritten on the way
    vlans: tuple[int, ...] = ()  # VIDs of the tags the flow knows of, outermost first (QinQ)


@dataclass
class TraceResult:
    """`ofproto/trace` of one packet: the parsed tree plus outputs as (bridge, ofport)."""

    bridge: str
    text: str
    parsed: OvsTrace
    outputs: list[PortOutput] = field(default_factory=list)

    @property
    def visited(self) -> list[tuple[int, int]]:
        """(table, priority) of each lookup in the traced bridge; -1 for a miss."""
        return self.parsed.visited(self.bridge)

    @property
    def output_ports(self) -> list[int]:
        return [o.ofport for o in self.outputs if o.bridge == self.bridge]

    @property
    def drop(self) -> bool:
        return not self.outputs

    @property
    def final_flow(self) -> dict[str, str]:
        return self.parsed.final_flow


class OvsSwitch:
    """ovsdb-server + ovs-vswitchd in a temp run dir (and namespace), as a context manager.

    Needs root (namespaces, tap devices). Every command runs with a bounded timeout; `close()`
    kills only the pids from its own pidfiles and removes its own directory and namespace.
    """

    def __init__(
        self,
        *,
        netns: str | None = None,
        timeout: float = 20.0,
        enable_dummy: bool = True,
    ) -> None:
        self.timeout = timeout
        self.enable_dummy = enable_dummy
        self._own_netns = netns is None
        self.netns = netns if netns is not None else f"tn-{os.getpid()}-ovs{next(_counter)}"
        self.rundir: Path | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._ports: dict[str, dict[str, PortInfo]] = {}
        self._netns_made = False
        self._dpif_cache: list[DpifPort] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> OvsSwitch:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise OvsError("OvsSwitch needs root (network namespace, tap devices)")
        if not SCHEMA.exists():
            raise OvsError(f"Open vSwitch schema {SCHEMA} not found (is openvswitch installed?)")
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        sweep_leftovers()
        if self._own_netns:
            self._run(["ip", "netns", "add", self.netns])
            self._netns_made = True
            self._run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        self.rundir = Path(tempfile.mkdtemp(prefix=f"tn-ovs-{os.getpid()}-"))
        rd = self.rundir
        self._run(["ovsdb-tool", "create", str(rd / "conf.db"), str(SCHEMA)])
        self._spawn(
            "ovsdb-server",
            [
                f"--remote=punix:{rd / 'db.sock'}",
                f"--unixctl={rd / 'ovsdb-server.ctl'}",
                str(rd / "conf.db"),
            ],
        )
        self._wait_for(lambda: (rd / "db.sock").exists(), "ovsdb-server socket")
        self.vsctl("--no-wait", "init")
        argv = [f"unix:{rd / 'db.sock'}", f"--unixctl={self.ctl}"]
        if self.enable_dummy:
            argv.append("--enable-dummy")
        self._spawn("ovs-vswitchd", argv)
        self._wait_for(self._vswitchd_answers, "ovs-vswitchd control socket")

    def _spawn(self, daemon: str, args: list[str]) -> None:
        """Start a daemon in the foreground as our child, so we can reap it (no zombies).

        `--detach` would reparent it to init, which in a container may never reap it.
        `ip netns exec` execs the daemon, so the child's pid is the daemon's pid.
        """
        if self.rundir is None:
            raise OvsError("OvsSwitch is not started")
        rd = self.rundir
        pidfile = rd / f"{daemon}.pid"
        argv = [
            find_binary(daemon),
            *args,
            f"--pidfile={pidfile}",
            f"--log-file={rd / (daemon + '.log')}",
            "--no-chdir",
            "-vconsole:off",
        ]
        with open(rd / f"{daemon}.out", "wb") as out:
            proc = subprocess.Popen(
                self._in_netns(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self._procs.append(proc)

    def _wait_for(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not ready():
            for proc in self._procs:
                if proc.poll() is not None:
                    raise OvsError(
                        f"a daemon exited with {proc.returncode} while waiting for {what}: "
                        f"{proc.args!r}{self._log_tail()}"
                    )
            if time.monotonic() > deadline:
                raise OvsError(f"timed out after {self.timeout}s waiting for {what}")
            time.sleep(0.02)

    def _vswitchd_answers(self) -> bool:
        if not self.ctl.exists():
            return False
        proc = self._run(["ovs-appctl", "-t", str(self.ctl), "version"], check=False)
        return proc.returncode == 0

    def close(self) -> None:
        """Stop exactly the daemons this instance started; remove its dir and namespace."""
        for proc in reversed(self._procs):
            _terminate(proc)
        self._procs.clear()
        if self._netns_made:
            subprocess.run(
                ["ip", "netns", "del", self.netns],
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
            self._netns_made = False
        if self.rundir is not None:
            shutil.rmtree(self.rundir, ignore_errors=True)
            self.rundir = None

    # --- running commands -----------------------------------------------------------------

    @property
    def daemon_pids(self) -> list[int]:
        """Pids of the ovsdb-server and ovs-vswitchd this instance runs (its own children)."""
        return [proc.pid for proc in self._procs]

    @property
    def ctl(self) -> Path:
        if self.rundir is None:
            raise OvsError("OvsSwitch is not started")
        return self.rundir / "ovs-vswitchd.ctl"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.rundir is not None:
            for name in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR"):
                env[name] = str(self.rundir)
        return env

    def _in_netns(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    def _run(
        self, argv: Sequence[str], *, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                list(argv),
                input=input,
                capture_output=True,
                text=True,
                env=self._env(),
                timeout=self.timeout * 2,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise OvsError(f"timed out after {exc.timeout}s: {' '.join(argv)}") from exc
        if check and proc.returncode != 0:
            raise OvsError(
                f"{' '.join(argv)} failed (exit {proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}{self._log_tail()}"
            )
        return proc

    def _log_tail(self) -> str:
        if self.rundir is None:
            return ""
        log = self.rundir / "ovs-vswitchd.log"
        if not log.exists():
            return ""
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if "|ERR|" in ln]
        return ("\nlast vswitchd errors:\n" + "\n".join(lines[-5:])) if lines else ""

    def run(
        self, argv: Sequence[str], *, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run any command with this instance's OVS_* environment and a bounded timeout."""
        return self._run(argv, input=input, check=check)

    def run_in_netns(
        self, argv: Sequence[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self._run(self._in_netns(list(argv)), check=check)

    def vsctl(self, *args: str) -> str:
        if self.rundir is None:
            raise OvsError("OvsSwitch is not started")
        return self._run(
            [
                "ovs-vsctl",
                f"--db=unix:{self.rundir / 'db.sock'}",
                f"--timeout={int(self.timeout)}",
                *args,
            ]
        ).stdout

    def ofctl(self, *args: str, input: str | None = None) -> str:
        return self._run(["ovs-ofctl", *args], input=input).stdout

    def appctl(self, *args: str) -> str:
        return self._run(
            ["ovs-appctl", "-t", str(self.ctl), f"--timeout={int(self.timeout)}", *args]
        ).stdout

    def mgmt(self, bridge: str) -> str:
        """The OpenFlow management socket of a bridge, as ovs-ofctl's target argument.

        ovs-ofctl finds BRIDGE.mgmt under OVS_RUNDIR too; the explicit socket avoids ever
        reaching another instance's bridge of the same name.
        """
        if self.rundir is None:
            raise OvsError("OvsSwitch is not started")
        return f"unix:{self.rundir / (bridge + '.mgmt')}"

    # --- configuration --------------------------------------------------------------------

    def add_bridge(
        self,
        name: str,
        datapath_type: str = "netdev",
        fail_mode: str | None = None,
        protocols: str = ALL_OPENFLOW,
    ) -> None:
        settings = [f"datapath_type={datapath_type}", f"protocols={protocols}"]
        if fail_mode is not None:
            settings.append(f"fail_mode={fail_mode}")
        self.vsctl("add-br", name, "--", "set", "Bridge", name, *settings)
        self._ports.setdefault(name, {})
        self._dpif_cache = None

    def add_port(
        self,
        bridge: str,
        name: str,
        ofport: int | None = None,
        type: str | None = None,
        options: Mapping[str, str] | None = None,
        *,
        tag: int | None = None,
        trunks: Sequence[int] = (),
    ) -> int:
        """Add a port and return its OpenFlow number (the requested one, checked).

        `tag` makes it an access port of that VLAN, `trunks` limits a trunk port to those
        VLANs (empty: every VLAN), as NORMAL switching reads them from the Port record.
        """
        port_settings: list[str] = []
        if tag is not None:
            port_settings.append(f"tag={tag}")
        if trunks:
            port_settings.append("trunks=" + ",".join(str(v) for v in trunks))
        settings: list[str] = []
        if type is not None:
            settings.append(f"type={type}")
        if ofport is not None:
            settings.append(f"ofport_request={ofport}")
        for key, value in (options or {}).items():
            settings.append(f"options:{key}={_ovsdb_string(value)}")
        cmd = ["add-port", bridge, name, *port_settings]
        if settings:
            cmd += ["--", "set", "Interface", name, *settings]
        self.vsctl(*cmd)
        got = int(self.vsctl("get", "Interface", name, "ofport").strip())
        error = self.vsctl("get", "Interface", name, "error").strip()
        # A patch port reports "No usable peer" until its peer is added; that is expected.
        pending_peer = type == "patch" and "peer" in error
        if got < 0 or (error not in ("", "[]") and not pending_peer):
            raise OvsError(f"port {name} on {bridge} did not come up: {error}")
        if ofport is not None and got != ofport:
            raise OvsError(f"port {name} got ofport {got}, not the requested {ofport}")
        self._ports.setdefault(bridge, {})[name] = PortInfo(
            bridge, name, got, type or "system", dict(options or {})
        )
        self._dpif_cache = None
        return got

    def add_tunnel_port(
        self,
        bridge: str,
        name: str,
        kind: str,
        remote_ip: str,
        ofport: int | None = None,
        key: str = "flow",
    ) -> int:
        """A VXLAN/GRE port whose key comes from the flow (set_tunnel), as Neutron makes them."""
        if kind not in TUNNEL_TYPES:
            raise OvsError(f"unknown tunnel kind {kind!r}; one of {sorted(TUNNEL_TYPES)}")
        return self.add_port(
            bridge, name, ofport, type=kind, options={"remote_ip": remote_ip, "key": key}
        )

    def add_underlay(
        self,
        peers: Iterable[str],
        *,
        bridge: str = "br-phy",
        local_ip: str = "192.0.2.1",
        prefix: int = 24,
        uplink: str = "uplink0",
    ) -> dict[str, str]:
        """Make tunnel output routable: a netdev bridge with the local IP and a dummy uplink.

        Each peer IP gets a static neighbour entry, so OVS's native tunnelling can build the
        outer header without any ARP on a wire. Returns peer IP -> the MAC used.
        """
        self.add_bridge(bridge)
        self.add_port(bridge, uplink, 1, type="dummy")
        # No IPv6 on the underlay device: its neighbour discovery would be flooded out of the
        # uplink and mix with the tunnel packets a test captures there.
        self.run_in_netns(["sysctl", "-qw", f"net.ipv6.conf.{bridge}.disable_ipv6=1"])
        self.run_in_netns(["ip", "addr", "add", f"{local_ip}/{prefix}", "dev", bridge])
        self.run_in_netns(["ip", "link", "set", bridge, "up"])
        macs: dict[str, str] = {}
        for ip in peers:
            octets = [int(x) for x in ip.split(".")]
            mac = "02:00:{:02x}:{:02x}:{:02x}:{:02x}".format(*octets)
            self.appctl("tnl/arp/set", bridge, ip, mac)
            macs[ip] = mac
        # OVS learns routes from the kernel over netlink; wait (bounded) until it has ours.
        deadline = time.monotonic() + self.timeout
        while f"dev {bridge}" not in self.appctl("ovs/route/show"):
            if time.monotonic() > deadline:
                raise OvsError(f"OVS never learned the route via {bridge}")
            time.sleep(0.05)
        return macs

    def ports(self, bridge: str) -> dict[str, PortInfo]:
        return dict(self._ports.get(bridge, {}))

    # --- flows ----------------------------------------------------------------------------

    def add_flows(
        self, bridge: str, lines: str | Iterable[str], *, protocols: str | None = None
    ) -> None:
        text = lines if isinstance(lines, str) else "\n".join(lines)
        if self.rundir is None:
            raise OvsError("OvsSwitch is not started")
        path = self.rundir / "flows.txt"
        path.write_text(text + "\n")
        self.ofctl(*_proto(protocols), "add-flows", self.mgmt(bridge), str(path))

    def add_flow(self, bridge: str, line: str, *, protocols: str | None = None) -> None:
        self.ofctl(*_proto(protocols), "add-flow", self.mgmt(bridge), line)

    def del_flows(self, bridge: str, match: str | None = None) -> None:
        self.ofctl("del-flows", self.mgmt(bridge), *([match] if match else []))

    def dump_flows(
        self,
        bridge: str,
        no_stats: bool = True,
        filter: str | None = None,
        *,
        protocols: str | None = None,
    ) -> list[str]:
        """`ovs-ofctl [--no-stats] dump-flows`, one flow a line, leading space removed."""
        args = [*_proto(protocols), "--no-names"]
        if no_stats:
            args.append("--no-stats")
        args += ["dump-flows", self.mgmt(bridge)]
        if filter:
            args.append(filter)
        out = self.ofctl(*args)
        return [
            line.strip()
            for line in out.splitlines()
            if line.strip() and not line.startswith(("NXST_", "OFPST_"))
        ]

    # --- tracing --------------------------------------------------------------------------

    def dpif_ports(self) -> list[DpifPort]:
        if self._dpif_cache is None:
            self._dpif_cache = parse_dpif_show(self.appctl("dpif/show"))
        return self._dpif_cache

    def trace_text(self, bridge: str, flow: str, *, generate: bool = False) -> str:
        return self.appctl("ofproto/trace", bridge, flow, *(["-generate"] if generate else []))

    def trace(self, bridge: str, flow: str, *, generate: bool = False) -> TraceResult:
        """`ofproto/trace BRIDGE FLOW`, parsed, with every copy mapped back to an ofport.

        A plain datapath port maps through `dpif/show`; an encapsulated copy maps to the
        tunnel port of `bridge` whose remote_ip is the outer destination and whose type is
        the encapsulation (vxlan/gre). Without `generate` OVS translates without side effects:
        learn() is not executed ("suppressing side effects"). With `generate` it builds a
        packet from the flow and the translation's side effects happen (learn() adds its
        flow), which is how a test feeds OVS a packet sequence.
        """
        text = self.trace_text(bridge, flow, generate=generate)
        parsed = parse_trace(text, bridge)
        result = TraceResult(bridge=bridge, text=text, parsed=parsed)
        if parsed.unparsed_actions:
            raise OvsError(
                f"datapath actions this harness cannot map: {parsed.unparsed_actions} "
                f"(trace of {flow!r} on {bridge})"
            )
        result.outputs = [self._map_output(bridge, out) for out in parsed.outputs]
        return result

    def _map_output(self, bridge: str, out: DatapathOutput) -> PortOutput:
        if out.tunnel is not None:
            tunnels = [
                p
                for p in self._ports.get(bridge, {}).values()
                if p.type == out.tunnel.kind and p.options.get("remote_ip") == out.tunnel.ip_dst
            ]
            if len(tunnels) != 1:
                raise OvsError(
                    f"{len(tunnels)} {out.tunnel.kind} ports on {bridge} with remote_ip "
                    f"{out.tunnel.ip_dst}; cannot name the tunnel of this copy"
                )
            port = tunnels[0]
            return PortOutput(
                bridge,
                port.ofport,
                port.name,
                out.vlan,
                out.tunnel.key,
                out.eth_src,
                out.eth_dst,
                out.arp,
                out.vlans,
            )
        for dp in self.dpif_ports():
            if dp.dp_port == out.dp_port:
                return PortOutput(
                    dp.bridge,
                    dp.ofport,
                    dp.name,
                    out.vlan,
                    None,
                    out.eth_src,
                    out.eth_dst,
                    out.arp,
                    out.vlans,
                )
        raise OvsError(f"datapath port {out.dp_port} is in no bridge of dpif/show")


_LEFTOVER_NETNS = re.compile(r"^tn-(\d+)-ovs\d+$")
_LEFTOVER_DIR = re.compile(r"^tn-ovs-(\d+)-")


def sweep_leftovers() -> None:
    """Remove what an OvsSwitch of a process that died by a signal could not remove.

    Only names this module makes (`tn-<pid>-ovsN` namespaces, `tn-ovs-<pid>-*` run dirs), only
    when that pid is gone, and only empty namespaces; the daemons themselves already died with
    their test process (PR_SET_PDEATHSIG).
    """
    listed = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False
    )
    for line in listed.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        found = _LEFTOVER_NETNS.match(name)
        if not found or Path(f"/proc/{found.group(1)}").exists():
            continue
        pids = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10, check=False
        )
        if not pids.stdout.strip():
            subprocess.run(
                ["ip", "netns", "del", name], capture_output=True, timeout=10, check=False
            )
    tmp = Path(tempfile.gettempdir())
    for entry in tmp.glob("tn-ovs-*"):
        found = _LEFTOVER_DIR.match(entry.name)
        if found and not Path(f"/proc/{found.group(1)}").exists():
            shutil.rmtree(entry, ignore_errors=True)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies, however it dies.

    A pytest killed by a signal runs no fixture teardown; without this its daemons would
    live on. The setting survives exec (`ip netns exec` then the daemon), not a fork, and
    the daemons run in the foreground, so it stays on the daemon itself.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def find_binary(name: str) -> str:
    """Path of an Open vSwitch program; the daemons live in /usr/sbin, often not on PATH."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise OvsError(f"{name} not found (install the openvswitch-switch package)")
    return found


def _proto(protocols: str | None) -> list[str]:
    return ["-O", protocols] if protocols else []


def _ovsdb_string(value: str) -> str:
    # ovs-vsctl parses values as OVSDB atoms: quote anything that is not a bare word.
    if value and all(ch.isalnum() or ch in "._-" for ch in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _terminate(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM our own child, wait (bounded), then SIGKILL; always reaped."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)
