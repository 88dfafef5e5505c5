"""Agents: one per hypervisor, registered by itself, alive while its heartbeats keep coming.

A heartbeat that changes nothing visible is stored without a change event, so the watch stream
is not flooded by hundreds of hypervisors reporting every few seconds. What peers must react to
(an agent appearing, its tunnel IP or tunnel types changing, it dying or coming back, its
deletion) is an event: a dead agent's tunnels are removed everywhere.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from tunnelnet.server.auth import Caller
from tunnelnet.server.controller import Controller, get_visible, public
from tunnelnet.server.errors import BadRequest
from tunnelnet.server.schemas import AgentHeartbeat, AgentRegister, AgentUpdate, parse
from tunnelnet.store.base import Doc, Txn

KIND = "agent"
FIELDS = (
    "id", "host", "agent_type", "binary", "topic", "description", "admin_state_up", "alive",
    "configurations", "created_at", "started_at", "heartbeat_timestamp",
)  # fmt: skip


def _configurations(given: dict[str, Any]) -> dict[str, Any]:
    conf = dict(given.get("configurations") or {})
    if conf.get("tunneling_ip") is not None:
        try:
            conf["tunneling_ip"] = str(ipaddress.ip_address(conf["tunneling_ip"]))
        except ValueError:
            raise BadRequest(
                f"agent.configurations.tunneling_ip {conf['tunneling_ip']!r} is not an IP address",
                "InvalidInput",
            ) from None
    return {k: v for k, v in conf.items() if v is not None}


def is_alive(ctl: Controller, doc: Doc) -> bool:
    return ctl.clock() - float(doc["_heartbeat"]) <= ctl.config.agent_down_time


def view(ctl: Controller, doc: Doc) -> Doc:
    out = public(doc)
    out["alive"] = is_alive(ctl, doc)
    return out


# (agent_type, host) -> agent id, as a claim: one agent of a type per host, found in O(1)
# (a scan of every agent per registration made a thousand hypervisors' start quadratic)
_BY_HOST = "agent-host"


def _host_key(agent_type: str, host: str) -> str:
    return f"{agent_type}\n{host}"


def _find(txn: Txn, agent_type: str, host: str) -> Doc | None:
    agent_id = txn.owner(_BY_HOST, _host_key(agent_type, host))
    return None if agent_id is None else txn.get(KIND, agent_id)


def ensure_index(ctl: Controller) -> int:
    """Adds the host claims that agents stored before the index existed lack; returns how
    many were added (run at start-up)."""
    added = 0
    with ctl.store.write() as txn:
        for doc in txn.list(KIND):
            if txn.claim(_BY_HOST, _host_key(doc["agent_type"], doc["host"]), doc["id"]):
                added += 1
    return added


def register(ctl: Controller, caller: Caller, data: Any) -> tuple[Doc, bool]:
    """Creates or refreshes the agent of (agent_type, host); True when it is new."""
    caller.require_admin_or_agent("registering an agent")
    model, given = parse(AgentRegister, data, KIND)
    conf = _configurations(given)
    now, stamp = ctl.clock(), ctl.now()
    with ctl.store.write() as txn:
        doc = _find(txn, model.agent_type, model.host)
        created = doc is None
        if doc is None:
            doc = {
                "id": ctl.new_id(),
                "host": model.host,
                "agent_type": model.agent_type,
                "admin_state_up": True,
                "created_at": stamp,
            }
        doc.update(
            binary=model.binary,
            topic=model.topic or "N/A",
            description=model.description or doc.get("description", ""),
            configurations=conf,
            started_at=stamp,  # registration is what an agent does when it starts
            heartbeat_timestamp=stamp,
            alive=True,
            _heartbeat=now,
        )
        txn.put(KIND, doc["id"], doc, None)
        if created:
            txn.claim(_BY_HOST, _host_key(model.agent_type, model.host), doc["id"])
    return view(ctl, doc), created


def heartbeat(ctl: Controller, caller: Caller, agent_id: str, data: Any) -> Doc:
    caller.require_admin_or_agent("an agent heartbeat")
    _, given = parse(AgentHeartbeat, data if data is not None else {}, KIND)
    with ctl.store.write() as txn:
        doc = get_visible(txn, caller, KIND, agent_id)
        changed = not doc.get("alive", False)
        if "configurations" in given:
            conf = _configurations(given)
            changed = changed or conf != doc["configurations"]
            doc["configurations"] = conf
        if given.get("tunnels") is not None:
            # reported state, not intent: no peer acts on it, so it makes no change event
            doc["tunnels"] = _tunnels(given["tunnels"])
        doc.update(heartbeat_timestamp=ctl.now(), alive=True, _heartbeat=ctl.clock())
        txn.put(KIND, agent_id, doc, None, emit=changed)
    return view(ctl, doc)


def _tunnels(reported: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for tunnel in reported:
        try:
            tunnel["remote_ip"] = str(ipaddress.IPv4Address(tunnel["remote_ip"]))
        except ValueError:
            raise BadRequest(f"agent.tunnels: remote_ip {tunnel['remote_ip']!r} is not an "
                             "IPv4 address", "InvalidInput") from None
    return sorted(reported, key=lambda t: str(t["port"]))


def tunnels(ctl: Controller, caller: Caller, host: str | None = None,
            state: str | None = None) -> list[Doc]:
    """Every agent's reported tunnels, each with the host at either end (the far one found
    by its tunneling IP) and when its agent last reported: ``/v2.0/tunnels``."""
    caller.require_admin_or_agent("listing tunnels")
    with ctl.store.read() as txn:
        docs = list(txn.list(KIND))
    by_ip = {d.get("configurations", {}).get("tunneling_ip"): d["host"] for d in docs}
    found = []
    for doc in sorted(docs, key=lambda d: str(d["host"])):
        if host is not None and doc["host"] != host:
            continue
        for tunnel in doc.get("tunnels", []):
            if state is not None and tunnel["state"] != state:
                continue
            found.append({"host": doc["host"], "agent_id": doc["id"], **tunnel,
                          "remote_host": by_ip.get(tunnel["remote_ip"]),
                          "agent_alive": is_alive(ctl, doc),
                          "reported_at": doc.get("heartbeat_timestamp")})
    return found


def update(ctl: Controller, caller: Caller, agent_id: str, data: Any) -> Doc:
    caller.require_admin("updating an agent")
    _, given = parse(AgentUpdate, data, KIND)
    with ctl.store.write() as txn:
        doc = get_visible(txn, caller, KIND, agent_id)
        for name in ("admin_state_up", "description"):
            if given.get(name) is not None:
                doc[name] = given[name]
        txn.put(KIND, agent_id, doc, None)
    return view(ctl, doc)


def delete(ctl: Controller, caller: Caller, agent_id: str) -> None:
    caller.require_admin("deleting an agent")
    with ctl.store.write() as txn:
        doc = get_visible(txn, caller, KIND, agent_id)
        txn.release(_BY_HOST, _host_key(doc["agent_type"], doc["host"]))
        txn.delete(KIND, agent_id)


def check_liveness(ctl: Controller) -> list[str]:
    """Stores (and so announces) every agent whose liveness changed; returns their ids.

    Called periodically: nothing else would tell the agents that a peer stopped reporting."""
    changed: list[str] = []
    with ctl.store.write() as txn:
        for doc in txn.list(KIND):
            alive = is_alive(ctl, doc)
            if alive != doc.get("alive"):
                doc["alive"] = alive
                txn.put(KIND, doc["id"], doc, None)
                changed.append(doc["id"])
    return changed
