"""``vsctl --sim HV`` and ``ofctl --sim HV``: a simulated hypervisor's switch answers the
read-only requests of the vswitchd control protocol (:mod:`tunnelnet.datapath.messages`).

The simulated bridges are the :class:`tunnelnet.switch.Bridge` objects a vswitchd runs, so
``show``, ``dump-flows`` and ``trace`` read the very tables the agents programmed. Changes are
refused: the agents own the switches (``lab stop agent-HV`` stops one). The simulation keeps no
port counters (frames are followed by trace, not sent), so ``dump-ports`` and friends are
refused too, naming what works instead.
"""

from __future__ import annotations

from typing import Any

from tunnelnet.agent.backend import BackendError
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.errors import ProtocolError
from tunnelnet.lab.sim import SimInputError, SimLab
from tunnelnet.lab.sim_switch import TUNNEL_TYPES, SimSwitch
from tunnelnet.packet.pmtu import SUMMARY as OVERSIZE_WORDS
from tunnelnet.packet.tunnel import overhead
from tunnelnet.packet.tunnel_kinds import INNER_ETHERNET, OUTER_ETHERNET
from tunnelnet.switch import SwitchError

OP = "switch"
READS = ("show", "list-br", "list-ports", "list-interface", "dump-flows", "trace")


def _ports(switch: SimSwitch, bridge: str) -> list[dict[str, Any]]:
    """A bridge's ports as vswitchd lists them (no statistics: the simulation counts none)."""
    return sorted(({"name": p.name, "ofport": p.ofport, "type": p.type, "tag": p.tag,
                    "options": dict(p.options), "external_ids": dict(p.external_ids)}
                   for p in switch.list_ports(bridge)), key=lambda p: str(p["name"]))


def _trace(switch: SimSwitch, r: m.TraceFlow, underlay_mtu: int) -> dict[str, Any]:
    trace = switch.bridge(r.bridge).trace(r.flow)
    notes = []
    for number in trace.outputs:
        port = switch.port_at(r.bridge, number)
        if port is not None and port.type in TUNNEL_TYPES:
            # the registry's overhead counts the outer Ethernet header, no part of the MTU
            around = overhead(port.type) - OUTER_ETHERNET
            notes.append(f"port {number} ({port.name}): {port.type} to "
                         f"{port.options.get('remote_ip')}, +{around} bytes outside the "
                         f"frame; underlay MTU {underlay_mtu}: frames over "
                         f"{underlay_mtu - around} bytes (an untagged VM's IP MTU "
                         f"{underlay_mtu - around - INNER_ETHERNET}) are not sent whole: "
                         f"{OVERSIZE_WORDS}")
        elif port is not None and port.type == "patch":
            notes.append(f"port {number} ({port.name}): patch to "
                         f"{port.options.get('peer')!r}; the packet continues there")
    text = trace.to_text(explain=r.explain)
    if notes:
        text = text.rstrip("\n") + "\n\nDatapath:\n" + "".join(f"  {n}\n" for n in notes)
    result = trace.to_json()
    result["datapath"] = notes
    return {"trace": result, "text": text}


def answer(switch: SimSwitch, request: m.Request, underlay_mtu: int = 1500) -> Any:
    """What the hypervisor's vswitchd would answer to ``request``; SimInputError for what a
    simulated switch does not do."""
    try:
        if isinstance(request, m.Show):
            return [{"name": name, "fail_mode": switch.bridges[name].fail_mode,
                     "ports": _ports(switch, name)} for name in sorted(switch.bridges)]
        if isinstance(request, m.ListBridges):
            return sorted(switch.bridges)
        if isinstance(request, m.ListPorts):
            return _ports(switch, request.bridge)
        if isinstance(request, m.DumpFlows):
            return list(switch.bridge(request.bridge).dump_flows(request.match,
                                                                 stats=request.stats))
        if isinstance(request, m.TraceFlow):
            return _trace(switch, request, underlay_mtu)
        if isinstance(request, m.ListInterfaces):
            found = [{**p, "bridge": name, "bfd": {}, "bfd_status": {}}
                     for name in sorted(switch.bridges) for p in _ports(switch, name)
                     if request.interface in ("", p["name"])]
            if request.interface and not found:
                raise SimInputError(f"no interface named {request.interface!r}")
            return sorted(found, key=lambda p: str(p["name"]))
    except (BackendError, SwitchError) as exc:
        raise SimInputError(str(exc)) from None
    if isinstance(request, m.BfdShow):
        raise SimInputError("bfd-show: a simulated lab has no time and no wire to lose, so "
                            "its tunnels run no BFD; a lab on namespaces does")
    if isinstance(request, (m.DumpPorts, m.DumpDrops, m.DatapathStats, m.FdbShow)):
        raise SimInputError(f"{request.OP}: a simulated switch counts no packets (frames are "
                            "followed by trace, not sent); 'tunnelnet trace A B' and "
                            "'lab verify' show where frames go")
    raise SimInputError(f"{request.OP}: the simulated lab's switches are programmed by its "
                        f"agents and only read from outside ({', '.join(READS)}); 'tunnelnet "
                        "lab stop agent-HV' stops an agent")


def handler(lab: SimLab, args: dict[str, Any]) -> Any:
    """The sim server's ``switch`` request: ``hypervisor`` and one encoded control request."""
    hv = args.get("hypervisor")
    if not isinstance(hv, str) or hv not in lab.switches:
        raise SimInputError(f"no hypervisor {hv!r} in the simulated lab (hypervisors: "
                            f"{', '.join(lab.switches)})")
    line = args.get("request")
    try:
        _, request = m.decode_request(str(line).encode())
    except ProtocolError as exc:
        raise SimInputError(f"not a control request: {exc}") from None
    return answer(lab.switches[hv], request, lab.topo.underlay_mtu)
