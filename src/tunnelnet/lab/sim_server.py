"""A simulated lab that stays up: one process holds it and answers the lab's commands.

``tunnelnet lab up --sim FILE`` starts this server (``lab sim-serve``) in the background; it
builds and converges the simulation, records the lab in the run directory (``state.json``
with ``sim`` set, like a real lab's record) and answers ``lab status``, ``verify``, ``ping``,
``trace`` and ``flows`` over a unix socket ``sim.sock`` beside it; ``lab down`` stops it.

Requests and replies are one JSON line each, as small typed records with one encode and
one decode. The server answers one request at a time: the simulation is single-threaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from tunnelnet.lab.sim import SimError, SimLab
from tunnelnet.lab.state import LabState, LabStateError, ProcessRecord, StateFile, VmRecord

log = logging.getLogger(__name__)

SOCKET_NAME = "sim.sock"
VERSION = 1
MAX_REQUEST = 1 << 16


@dataclass(frozen=True, slots=True)
class SimRequest:
    op: str
    args: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps({"v": VERSION, "op": self.op, "args": self.args}).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> SimRequest:
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise SimError(f"request is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("v") != VERSION or \
                not isinstance(data.get("op"), str) or not isinstance(data.get("args", {}), dict):
            raise SimError(f"request is not a version {VERSION} sim request")
        return cls(data["op"], dict(data.get("args", {})))


@dataclass(frozen=True, slots=True)
class SimReply:
    ok: bool
    result: Any = None
    error: str = ""

    def encode(self) -> bytes:
        return json.dumps({"v": VERSION, "ok": self.ok, "result": self.result,
                           "error": self.error}).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> SimReply:
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise SimError(f"reply is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise SimError(f"reply is not a version {VERSION} sim reply")
        return cls(bool(data.get("ok")), data.get("result"), str(data.get("error", "")))


# -- where a simulated lab lives -----------------------------------------------------------


def fallback_dir() -> Path:
    """Where a user without write access to the default run directory keeps a sim lab."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"tunnelnet-lab-{os.getuid()}"


def usable_dir(directory: Path) -> Path:
    """``directory`` if we may write there (or create it), else :func:`fallback_dir`."""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return directory if os.access(probe, os.W_OK) else fallback_dir()


def find_sim(directory: Path) -> Path | None:
    """The run directory of a simulated lab that is up, looking where ``up --sim`` puts it."""
    for candidate in dict.fromkeys((directory, usable_dir(directory))):
        file = StateFile(candidate)
        if not file.exists():
            continue
        try:
            if file.load().sim:
                return candidate
        except LabStateError:
            continue
    return None


# -- the server ----------------------------------------------------------------------------


def record(lab: SimLab, directory: Path, topology: str, *, server_url: str = "",
           admin_token: str = "") -> LabState:
    state = LabState(topology=str(Path(topology).resolve()), sim=True,
                     processes=[ProcessRecord("sim", os.getpid())],
                     server_url=server_url, admin_token=admin_token)
    for hv in lab.topo.hypervisors:
        state.hypervisors[hv.name] = {"ip": hv.ip, "netns": "", "rundir": ""}
    for name, net_id in lab.network_ids.items():
        net = lab.topo.network(name)
        state.networks[name] = {"id": net_id, "tenant": net.tenant, "type": net.type,
                                "cidr": net.cidr}
    for vm in lab.vms.values():
        state.vms[vm.name] = VmRecord(name=vm.name, tenant=vm.tenant, network=vm.network,
                                      hypervisor=vm.hypervisor, netns="", port_id=vm.port_id,
                                      mac=vm.mac, ip=vm.ip, mtu=vm.mtu, tap=vm.vnic)
    StateFile(directory).save(state)
    return state


Handler = Callable[[SimLab, dict[str, Any]], Any]


def _status(lab: SimLab, _args: dict[str, Any]) -> dict[str, Any]:
    statuses = lab.port_statuses()
    return {
        "simulated": True,
        "hypervisors": [{"name": hv.name, "ip": hv.ip, "agent_alive": hv.name not in lab.stopped,
                         "tunnels": [p.name for p in lab.tunnels(hv.name)]}
                        for hv in lab.topo.hypervisors],
        "vms": [{"name": vm.name, "tenant": vm.tenant, "network": vm.network,
                 "hypervisor": vm.hypervisor, "ip": vm.ip, "mac": vm.mac, "mtu": vm.mtu,
                 "port_status": statuses.get(vm.port_id, "UNKNOWN")}
                for vm in sorted(lab.vms.values(), key=lambda v: v.name)],
    }


def _verify(lab: SimLab, _args: dict[str, Any]) -> dict[str, Any]:
    results = lab.verify()
    return {"pairs": [{"src": r.src, "dst": r.dst, "expected": r.expected,
                       "reached": r.reached, "detail": r.detail} for r in results],
            "surprises": sum(1 for r in results if r.surprise)}


def _ping(lab: SimLab, args: dict[str, Any]) -> dict[str, Any]:
    r = lab.ping(str(args.get("src")), str(args.get("dst")))
    return {"src": r.src, "dst": r.dst, "dst_ip": lab.vm(r.dst).ip, "reached": r.reached,
            "answered_by": r.answered_by, "detail": r.detail}


def _flows(lab: SimLab, args: dict[str, Any]) -> list[str]:
    hv = str(args.get("hypervisor"))
    if hv not in lab.switches:
        raise SimError(f"no hypervisor {hv!r} (hypervisors: {', '.join(lab.switches)})")
    from tunnelnet.agent.backend import BackendError

    try:
        return lab.switches[hv].bridge(str(args.get("bridge", "br-tun"))).dump_flows()
    except BackendError as exc:
        raise SimError(str(exc)) from None


def _add_vm(lab: SimLab, args: dict[str, Any]) -> dict[str, Any]:
    from tunnelnet.lab.topology import Vm

    network = str(args.get("network"))
    known = {n.name: n for n in lab.topo.networks}
    if network not in known:
        raise SimError(f"unknown network {network!r} (networks: {', '.join(known)})")
    ip = args.get("ip")
    vm = lab.plug_vm(Vm(str(args.get("name")), known[network].tenant, network,
                        str(args.get("hypervisor")), str(ip) if ip else None))
    lab.converge()
    return {"name": vm.name, "ip": vm.ip, "mac": vm.mac, "hypervisor": vm.hypervisor,
            "tenant": vm.tenant, "network": vm.network,
            "port_status": lab.port_statuses().get(vm.port_id, "UNKNOWN")}


def _agent_host(daemon: str) -> str:
    kind, _, host = daemon.partition("-")
    if kind != "agent" or not host:
        raise SimError(f"{daemon!r}: in a simulated lab only agents can be stopped and "
                       "started (agent-HV); its switches and controller live in the "
                       "simulation's process")
    return host


def _stop_agent(lab: SimLab, args: dict[str, Any]) -> str:
    host = _agent_host(str(args.get("daemon")))
    lab.stop_agent(host)
    return f"agent of {host} stopped; its switch keeps forwarding"


def _start_agent(lab: SimLab, args: dict[str, Any]) -> str:
    host = _agent_host(str(args.get("daemon")))
    lab.start_agent(host)
    report = lab.converge()
    return (f"agent of {host} started (new cookie {lab.agents[host].cookie:#x}); converged "
            f"after {report.passes} passes")


def _labview(lab: SimLab, args: dict[str, Any]) -> Any:
    """`tunnelnet trace` and `tunnelnet web` ask the simulated lab what a real one answers
    through its control sockets (imported here, on use: the trace layer sits beside ours)."""
    from tunnelnet.trace.sim_remote import handler

    return handler(lab, args)


HANDLERS: dict[str, Handler] = {"status": _status, "verify": _verify, "ping": _ping,
                                "flows": _flows, "add-vm": _add_vm, "stop-agent": _stop_agent,
                                "start-agent": _start_agent, "labview": _labview}


class SimServer:
    def __init__(self, lab: SimLab, directory: Path,
                 extra: dict[str, Handler] | None = None,
                 after: Callable[[], None] | None = None) -> None:
        self.lab = lab
        self.path = directory / SOCKET_NAME
        self.handlers = {**HANDLERS, **(extra or {})}
        self.after = after  # called after each request (state changed?) and when idle
        self._stop = False
        self._seen = lab.store.current_revision()

    def step(self) -> None:
        """Between requests: whatever changed in the controller (through its REST API, say)
        is taken up by the agents, as running agents would."""
        revision = self.lab.store.current_revision()
        if revision != self._seen:
            self.lab.converge()
            self._seen = self.lab.store.current_revision()
            if self.after is not None:
                self.after()

    def answer(self, request: SimRequest) -> SimReply:
        if request.op == "stop":
            self._stop = True
            return SimReply(True, "stopping")
        handler = self.handlers.get(request.op)
        if handler is None:
            return SimReply(False, error=f"unknown request {request.op!r} (known: "
                                         f"{', '.join(sorted(self.handlers))}, stop)")
        try:
            return SimReply(True, handler(self.lab, request.args))
        except SimError as exc:
            return SimReply(False, error=str(exc))

    def serve(self) -> None:
        """Answer requests until a ``stop`` request or SIGTERM/SIGINT."""
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        sock.listen(8)
        sock.settimeout(0.5)  # wake up now and then to notice a signal

        def on_signal(_sig: int, _frame: FrameType | None) -> None:
            self._stop = True

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not self._stop:
                try:
                    conn, _ = sock.accept()
                except TimeoutError:
                    self.step()
                    continue
                with conn:
                    self._one(conn)
                self.step()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sock.close()
            self.path.unlink(missing_ok=True)

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(10.0)
        data = b""
        with contextlib.suppress(OSError):
            while b"\n" not in data and len(data) < MAX_REQUEST:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        try:
            reply = self.answer(SimRequest.decode(data.split(b"\n", 1)[0]))
        except SimError as exc:
            reply = SimReply(False, error=str(exc))
        with contextlib.suppress(OSError):
            conn.sendall(reply.encode())


class SimClient:
    def __init__(self, directory: Path, timeout: float = 600.0) -> None:
        self.path = directory / SOCKET_NAME
        self.timeout = timeout

    def call(self, op: str, **args: Any) -> Any:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                sock.sendall(SimRequest(op, args).encode())
                data = b""
                while not data.endswith(b"\n"):
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        break
                    data += chunk
        except OSError as exc:
            raise SimError(f"the simulated lab at {self.path} does not answer ({exc}); "
                           "'tunnelnet lab down' clears its record") from None
        reply = SimReply.decode(data)
        if not reply.ok:
            raise SimError(reply.error)
        return reply.result
