"""Agents: one per hypervisor, registered by itself, alive while its heartbeats keep coming.

Liveness is the store's *life* of the agent's id (Store.beat / Store.lives): a heartbeat is a
beat, which is no transaction and writes no document (on etcd, a lease keepalive: no key
write, no raft proposal), and every controller on the store judges the same. A heartbeat
writes the agent's document only when something in it changes: configurations, reported
tunnels, or the agent coming back. What peers must react to (an agent appearing, its tunnel
IP or tunnel types changing, it dying or coming back, its deletion) is an event: the stored
`alive` follows the life (check_liveness, run by every controller; the first to see a change
writes it, the others then find nothing to do), and a dead agent's tunnels are removed
everywhere.

`heartbeat_timestamp` in a list is the stored one (written when the document last changed);
showing one agent, or answering its heartbeat, gives the last beat itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Set
from datetime import UTC, datetime
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


def lives(ctl: Controller) -> set[str]:
    """The ids of the agents alive now (one read of the store, for a whole listing)."""
    return ctl.store.lives(ctl.clock())


def _beat(ctl: Controller, agent_id: str) -> bool:
    return ctl.store.beat(agent_id, ctl.config.agent_down_time, ctl.clock())


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def viewer(ctl: Controller, live: Set[str] | None = None) -> Callable[[Doc], Doc]:
    """The API's view of agent documents, liveness read once for all of them."""
    alive = lives(ctl) if live is None else live

    def view_one(doc: Doc) -> Doc:
        out = public(doc)
        out["alive"] = doc["id"] in alive
        return out

    return view_one


def view(ctl: Controller, doc: Doc) -> Doc:
    """One agent, with the time of its last beat."""
    out = public(doc)
    last = ctl.store.last_beat(doc["id"], ctl.clock())
    out["alive"] = last is not None
    if last is not None:
        out["heartbeat_timestamp"] = _stamp(last)
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
    stamp = ctl.now()
    # the life first, so no controller judges the stored alive agent dead in between
    with ctl.store.read() as txn:
        known = _find(txn, model.agent_type, model.host)
    agent_id = ctl.new_id() if known is None else known["id"]
    _beat(ctl, agent_id)
    with ctl.store.write() as txn:
        doc = _find(txn, model.agent_type, model.host)
        created = doc is None
        if doc is None:
            doc = {
                "id": agent_id,
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
        )
        doc.pop("_heartbeat", None)  # where liveness was kept before lives
        txn.put(KIND, doc["id"], doc, None)
        if created:
            txn.claim(_BY_HOST, _host_key(model.agent_type, model.host), doc["id"])
    if doc["id"] != agent_id:  # another registration of this host came first
        _beat(ctl, doc["id"])
    return view(ctl, doc), created


def heartbeat(ctl: Controller, caller: Caller, agent_id: str, data: Any) -> Doc:
    caller.require_admin_or_agent("an agent heartbeat")
    _, given = parse(AgentHeartbeat, data if data is not None else {}, KIND)
    # checked before anything is done: a bad report changes nothing, not even the life
    conf = _configurations(given) if "configurations" in given else None
    reported = _tunnels(given["tunnels"]) if given.get("tunnels") is not None else None
    with ctl.store.read() as txn:
        doc = get_visible(txn, caller, KIND, agent_id)
    began = _beat(ctl, agent_id)
    if began or _differs(doc, conf, reported):
        doc = _record(ctl, caller, agent_id, conf, reported)
    out = public(doc)
    out.update(alive=True, heartbeat_timestamp=ctl.now())
    return out


def _differs(doc: Doc, conf: dict[str, Any] | None, reported: list[dict[str, Any]] | None
             ) -> bool:
    """Whether a heartbeat has anything to write: most have not, and write nothing."""
    return (not doc.get("alive", False) or "_heartbeat" in doc
            or (conf is not None and conf != doc["configurations"])
            or (reported is not None and reported != doc.get("tunnels")))


def _record(ctl: Controller, caller: Caller, agent_id: str, conf: dict[str, Any] | None,
            reported: list[dict[str, Any]] | None) -> Doc:
    """Writes what a heartbeat changed: an event when peers must know (configurations, or
    the agent back alive), quietly for its reported tunnels."""
    with ctl.store.write() as txn:
        doc = get_visible(txn, caller, KIND, agent_id)
        changed = not doc.get("alive", False)
        if conf is not None:
            changed = changed or conf != doc["configurations"]
            doc["configurations"] = conf
        if reported is not None:
            # reported state, not intent: no peer acts on it, so it makes no change event
            doc["tunnels"] = reported
        doc.update(heartbeat_timestamp=ctl.now(), alive=True)
        doc.pop("_heartbeat", None)
        txn.put(KIND, agent_id, doc, None, emit=changed)
    return doc


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
    live = lives(ctl)
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
                          "agent_alive": doc["id"] in live,
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
    ctl.store.end_life(agent_id)


def check_liveness(ctl: Controller) -> list[str]:
    """Stores (and so announces) every agent whose stored `alive` no longer matches its
    life; returns their ids.

    Called periodically by every controller: nothing else would tell the agents that a peer
    stopped reporting. Looking is two reads and takes no lock; only a mismatch is written,
    judged again under the write lock, so of several controllers that saw it the first
    writes it and the others find nothing left to do."""
    with ctl.store.read() as txn:
        docs = txn.list(KIND)
    live = lives(ctl)
    suspects = [d["id"] for d in docs if (d["id"] in live) != bool(d.get("alive"))]
    if not suspects:
        return []
    changed: list[str] = []
    with ctl.store.write() as txn:
        live = lives(ctl)  # a beat may have come since; read after the lock is ours
        for agent_id in suspects:
            doc = txn.get(KIND, agent_id)
            if doc is None:
                continue
            alive = agent_id in live
            if alive != bool(doc.get("alive")):
                doc["alive"] = alive
                doc.pop("_heartbeat", None)
                txn.put(KIND, agent_id, doc, None)
                changed.append(agent_id)
    return changed


def adopt_heartbeats(ctl: Controller) -> int:
    """Begins the lives of agents stored before lives existed whose `_heartbeat` was recent,
    so an upgrade does not take them for dead; returns how many (run at start-up). A whole
    down time each: a lease keeps the TTL it was granted with, and a shorter one would
    outlive no heartbeat interval longer than it."""
    now = ctl.clock()
    with ctl.store.read() as txn:
        old = [d for d in txn.list(KIND) if "_heartbeat" in d]
    live = lives(ctl)
    adopted = 0
    for doc in old:
        left = ctl.config.agent_down_time - (now - float(doc["_heartbeat"]))
        if doc["id"] not in live and left > 0:
            _beat(ctl, doc["id"])
            adopted += 1
    return adopted
