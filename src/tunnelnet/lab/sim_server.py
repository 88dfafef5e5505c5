"""A simulated lab that stays up: one process holds it and answers the lab's commands.

``tunnelnet lab up --sim FILE`` starts this server (``lab sim-serve``) in the background; it
builds and converges the simulation, records the lab in the run directory (``state.json``
with ``sim`` set, like a real lab's record) and answers ``lab status``, ``verify``, ``ping``
and ``flows`` over a unix socket ``sim.sock`` beside it; ``lab down`` stops it.

Requests and replies are one JSON line each (:mod:`tunnelnet.lab.sim_wire`). The server
answers one request at a time: the simulation is single-threaded. Layers above the lab add
requests of their own when they start it (the trace's ``labview``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from tunnelnet.errors import TunnelnetError
from tunnelnet.lab.sim import SimError, SimInputError, SimLab, sim_config
from tunnelnet.lab.sim_wire import MAX_REQUEST, SOCKET_NAME, SimReply, SimRequest
from tunnelnet.lab.state import LabState, ProcessRecord, StateFile, VmRecord

log = logging.getLogger(__name__)


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


def _text(args: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """Argument ``name`` of a request: a string, or refused as the request's fault."""
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise SimInputError(f"the request needs {name!r} as a non-empty string, not {value!r}")
    return value


def _need(args: dict[str, Any], name: str) -> str:
    value = _text(args, name)
    assert value is not None  # required
    return value


def _status(lab: SimLab, _args: dict[str, Any]) -> dict[str, Any]:
    statuses = lab.port_statuses()
    return {
        "simulated": True,
        "hypervisors": [{"name": hv.name, "ip": hv.ip, "agent_alive": hv.name not in lab.stopped,
                         "tunnels": [p.name for p in lab.tunnels(hv.name)],
                         "tunnel_remotes": {p.name: p.options.get("remote_ip", "")
                                            for p in lab.tunnels(hv.name)}}
                        for hv in lab.topo.hypervisors],
        "vms": [{"name": vm.name, "tenant": vm.tenant, "network": vm.network,
                 "hypervisor": vm.hypervisor, "ip": vm.ip, "mac": vm.mac, "mtu": vm.mtu,
                 "port_status": statuses.get(vm.port_id, "UNKNOWN"), "tap": vm.vnic,
                 "port_id": vm.port_id}
                for vm in sorted(lab.vms.values(), key=lambda v: v.name)],
    }


def _verify(lab: SimLab, _args: dict[str, Any]) -> dict[str, Any]:
    results = lab.verify()
    return {"pairs": [{"src": r.src, "dst": r.dst, "expected": r.expected,
                       "reached": r.reached, "detail": r.detail} for r in results],
            "surprises": sum(1 for r in results if r.surprise)}


def _ping(lab: SimLab, args: dict[str, Any]) -> dict[str, Any]:
    r = lab.ping(_need(args, "src"), _need(args, "dst"))
    return {"src": r.src, "dst": r.dst, "dst_ip": lab.vm(r.dst).ip, "reached": r.reached,
            "answered_by": r.answered_by, "detail": r.detail}


def _flows(lab: SimLab, args: dict[str, Any]) -> list[str]:
    hv = _need(args, "hypervisor")
    if hv not in lab.switches:
        raise SimInputError(f"no hypervisor {hv!r} (hypervisors: {', '.join(lab.switches)})")
    from tunnelnet.agent.backend import BackendError

    switch = lab.switches[hv]
    try:
        return switch.bridge(_text(args, "bridge", required=False) or "br-tun").dump_flows()
    except BackendError as exc:
        raise SimInputError(f"{exc} (bridges: {', '.join(sorted(switch.bridges))})") from None


def _add_vm(lab: SimLab, args: dict[str, Any]) -> dict[str, Any]:
    from tunnelnet.lab.topology import Vm

    network = _need(args, "network")
    known = {n.name: n for n in lab.topo.networks}
    if network not in known:
        raise SimInputError(f"unknown network {network!r} (networks: {', '.join(known)})")
    vm = lab.plug_vm(Vm(_need(args, "name"), known[network].tenant, network,
                        _need(args, "hypervisor"), _text(args, "ip", required=False)))
    lab.converge()
    return {"name": vm.name, "ip": vm.ip, "mac": vm.mac, "hypervisor": vm.hypervisor,
            "tenant": vm.tenant, "network": vm.network,
            "port_status": lab.port_statuses().get(vm.port_id, "UNKNOWN")}


def _move(lab: SimLab, args: dict[str, Any]) -> dict[str, Any]:
    return lab.move_vm(_need(args, "vm"), _need(args, "hypervisor")).document()


def _agent_host(daemon: str) -> str:
    kind, _, host = daemon.partition("-")
    if kind != "agent" or not host:
        raise SimInputError(f"{daemon!r}: in a simulated lab only agents can be stopped and "
                       "started (agent-HV); its switches and controller live in the "
                       "simulation's process")
    return host


def _stop_agent(lab: SimLab, args: dict[str, Any]) -> str:
    host = _agent_host(_need(args, "daemon"))
    lab.stop_agent(host)
    return f"agent of {host} stopped; its switch keeps forwarding"


def _start_agent(lab: SimLab, args: dict[str, Any]) -> str:
    host = _agent_host(_need(args, "daemon"))
    lab.start_agent(host)
    report = lab.converge()
    return (f"agent of {host} started (new cookie {lab.agents[host].cookie:#x}); converged "
            f"after {report.passes} passes")


def _switch(lab: SimLab, args: dict[str, Any]) -> Any:
    from tunnelnet.lab import sim_vswitch

    return sim_vswitch.handler(lab, args)


# The requests the lab's own commands make (``switch``: vsctl/ofctl --sim). Layers above the
# lab add theirs when they start the server (``tunnelnet trace`` asks ``labview``, see
# tunnelnet.trace.sim_remote).
HANDLERS: dict[str, Handler] = {"status": _status, "verify": _verify, "ping": _ping,
                                "flows": _flows, "add-vm": _add_vm, "move": _move,
                                "stop-agent": _stop_agent,
                                "start-agent": _start_agent, "switch": _switch}


class SimServer:
    def __init__(self, lab: SimLab, directory: Path,
                 extra: Mapping[str, Handler] | None = None,
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

    def _step_safely(self) -> None:
        try:
            self.step()
        except Exception:  # whatever came in through the REST API must not end the lab
            log.exception("taking up the controller's changes failed; the lab goes on")
            self._seen = self.lab.store.current_revision()  # once, not every half second

    def answer(self, request: SimRequest) -> SimReply:
        if request.op == "stop":
            self._stop = True
            return SimReply(True, "stopping")
        handler = self.handlers.get(request.op)
        if handler is None:
            return SimReply(False, error=f"unknown request {request.op!r} (known: "
                                         f"{', '.join(sorted(self.handlers))}, stop)",
                            bad_input=True)
        try:
            return SimReply(True, handler(self.lab, request.args))
        except SimInputError as exc:
            return SimReply(False, error=str(exc), bad_input=True)
        except TunnelnetError as exc:
            return SimReply(False, error=str(exc))
        except Exception as exc:  # one request's bug must not end the lab
            log.exception("request %r failed", request.op)
            return SimReply(False, error=f"the simulation failed on {request.op!r} ({exc!r}); "
                                         "the lab is still up, its log has the details")

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
                    self._step_safely()
                    continue
                with conn:
                    self._one(conn)
                self._step_safely()
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
            reply = SimReply(False, error=str(exc), bad_input=True)
        with contextlib.suppress(OSError):
            conn.sendall(reply.encode())


def hold(directory: Path, topology: str, *, l2pop: bool, arp_responder: bool,
         extra: Mapping[str, Handler], say: Callable[[str], None]) -> None:
    """Build and converge TOPOLOGY's simulation, record it in ``directory`` and answer the lab
    commands until stopped (``lab sim-serve``, which ``lab up --sim`` starts)."""
    from tunnelnet.lab.topology import load
    from tunnelnet.server.runner import BackgroundServer

    topo = load(topology)
    file = StateFile(directory)
    if file.exists():
        raise TunnelnetError(f"a lab is already up (state in {file.path}); take it down first "
                             "with 'tunnelnet lab down'")
    directory.mkdir(parents=True, exist_ok=True)
    # the controller also serves its REST API (loopback), so the client commands and
    # 'lab env' work against the simulated cloud; the agents read it in-process
    token = secrets.token_hex(16)
    api = BackgroundServer(sim_config(topo).with_overrides(
        host="127.0.0.1", port=0, db=":memory:", admin_token=token)).start()
    try:
        lab = SimLab(topo, l2pop=l2pop, arp_responder=arp_responder, progress=say,
                     controller=api.controller)
        report = lab.up()
        if not report.converged:
            raise TunnelnetError(f"the agents did not converge in {report.passes} passes")

        def save() -> None:
            record(lab, directory, topology, server_url=api.url, admin_token=token)

        save()
        say(f"simulated lab is up: {len(lab.switches)} hypervisors, {len(lab.vms)} VMs; "
            f"lab commands on {directory / SOCKET_NAME}, controller API on {api.url}")
        try:
            SimServer(lab, directory, extra, after=save).serve()
        finally:
            file.remove()
    finally:
        api.stop()
