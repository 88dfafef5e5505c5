"""Control-plane benchmark: simulated hypervisors against real controller processes.

    python -m bench.control_plane [--agents 200] [--ports 4000] [--only sqlite,etcd]
    python -m bench.control_plane --steady-only --agents 1000 --only etcd

``--steady-only``: hypervisors that only register and report (bench.cp_beats, every report
through each controller in turn), then the steady state alone: what liveness costs.

Scenario ``sqlite``: one ``tunnelnet server`` on a SQLite file. Scenario ``etcd``: a 3-member
etcd cluster on loopback and two ``tunnelnet server`` processes on it, the agents spread over
both through their controller URL lists. In both, the hypervisors are real agents with the
real HTTP client (bench.cp_agents) in a few worker processes, one thread each, over loopback
TCP. Measured per scenario:

- seconds until every agent registered; seconds of the API writes (networks, then the ports
  in bulk creates, each vNIC plugged as its create returns); seconds from the first port
  write until every agent converged (registered, its ports ACTIVE by its own report, every
  port that concerns it in its view — its own and those of the networks it has a port on,
  what the controller sends it — and flows computed from it);
- controller (and etcd) CPU seconds and RSS from /proc;
- steady state (nothing but heartbeats and idle long polls): etcd keys written per second and
  raft proposals per second, and per heartbeat; controller CPU per second;
- single port creates (probes): delay from the API call to the last interested agent (one
  with ports on that network, or the port's host) having the port in its view, p50 and p99.

Prints one table, writes JSON (``--out``). Every process and the temporary directory are
removed at the end, also on Ctrl-C or SIGTERM. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from bench.cp_agents import PROBE_PREFIX
from bench.cp_procs import (
    ADMIN_TOKEN,
    AGENT_TOKEN,
    BenchError,
    ControllerProc,
    EtcdMember,
    Processes,
    cost,
    etcd_counters,
    etcd_is_leader,
    start_controller,
    start_etcd,
)
from bench.cp_worker import host_name
from tunnelnet.api import ClientError
from tunnelnet.client.http import Client

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("sqlite", "etcd")
BULK = 250  # ports per bulk create
ADMIN_TIMEOUT = 180.0  # seconds the benchmark's own API writes may take
PROBE_WAIT = 15.0  # seconds a probe port may take to reach every interested agent
PORTS_PER_NETWORK = 100  # networks = ports / this; each a /24
ETCD_MEMBERS, ETCD_CONTROLLERS = 3, 2


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@dataclass
class Observed:
    """What the workers reported, filled by their reader threads."""

    registered: dict[str, float] = field(default_factory=dict)
    converged: dict[str, float] = field(default_factory=dict)
    seen: dict[str, dict[str, float]] = field(default_factory=dict)  # probe -> host -> t
    heartbeats: list[int] = field(default_factory=list)
    totals: list[dict[str, int]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def take(self, record: dict[str, Any]) -> None:
        with self.cond:
            if "registered" in record:
                self.registered[record["registered"]] = record["t"]
            elif "converged" in record:
                self.converged[record["converged"]] = record["t"]
            elif "seen" in record:
                self.seen.setdefault(record["seen"], {})[record["host"]] = record["t"]
            elif "heartbeats" in record:
                self.heartbeats.append(int(record["heartbeats"]))
            elif "totals" in record:
                self.totals.append(record["totals"])
            self.cond.notify_all()

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Waits in short slices: a long blocked wait would hold off Ctrl-C and SIGTERM
        (their handlers run between slices, in this thread)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            with self.cond:
                if self.cond.wait_for(done, max(0.0, min(remaining, 0.5))):
                    return True
            if remaining <= 0:
                return False


class Worker:
    """One bench.cp_agents process and the thread reading its reports."""

    def __init__(self, procs: Processes, workdir: Path, urls: list[str], first: int, count: int,
                 args: argparse.Namespace, observed: Observed) -> None:
        argv = [sys.executable, "-m", "bench.cp_agents", "--urls", ",".join(urls),
                "--token", AGENT_TOKEN, "--first", str(first), "--count", str(count),
                "--heartbeat-interval", str(args.heartbeat_interval)]
        if args.steady_only:  # hypervisors that only register and report
            argv[2] = "bench.cp_beats"
        else:
            argv += ["--poll-interval", str(args.poll_interval),
                     "--long-poll", str(args.long_poll)]
        self.hosts = [host_name(i) for i in range(first, first + count)]
        self.proc = procs.spawn(f"agents-{first}", argv, workdir / f"agents-{first}.log",
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.observed = observed
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        if stdout is not None:
            for line in stdout:
                self.observed.take(json.loads(line))

    def send(self, message: dict[str, Any]) -> None:
        stdin: IO[bytes] | None = self.proc.stdin
        if stdin is None or self.proc.poll() is not None:
            raise BenchError(f"agent worker {self.hosts[0]}.. exited (see its log)")
        with self._lock:
            stdin.write((json.dumps(message) + "\n").encode())
            stdin.flush()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Cloud:
    """The scenario's real processes and what the benchmark knows of them."""

    controllers: list[ControllerProc]
    etcd: list[EtcdMember]
    admins: list[Client]
    workers: list[Worker] = field(default_factory=list)

    def costs(self) -> dict[str, Any]:
        ctl = [cost(c.proc.pid) for c in self.controllers]
        out: dict[str, Any] = {"controller_cpu_s": round(sum(c.cpu_s for c in ctl), 2),
                               "controller_rss_mb": [c.rss_mb for c in ctl],
                               "controller_peak_rss_mb": [c.peak_rss_mb for c in ctl]}
        if self.workers:
            # the simulated hypervisors' CPU: on real hosts each has a machine of its own,
            # here they share this one with the controllers
            out["agents_cpu_s"] = round(sum(cost(w.proc.pid).cpu_s for w in self.workers), 2)
        if self.etcd:
            ec = [cost(m.proc.pid) for m in self.etcd if m.proc is not None]
            out.update(etcd_cpu_s=round(sum(c.cpu_s for c in ec), 2),
                       etcd_rss_mb=[c.rss_mb for c in ec])
        return out

    def etcd_counters(self) -> dict[str, float]:
        leader = next((m for m in self.etcd if etcd_is_leader(m)), self.etcd[0])
        return etcd_counters(leader)


def start_cloud(kind: str, procs: Processes, workdir: Path) -> Cloud:
    if kind == "sqlite":
        controllers = [start_controller(procs, workdir, "controller-1",
                                        f"sqlite:{workdir / 'controller.db'}")]
        members: list[EtcdMember] = []
    else:
        say(f"starting a {ETCD_MEMBERS}-member etcd cluster on loopback")
        members = start_etcd(procs, workdir, ETCD_MEMBERS)
        endpoints = ",".join(f"127.0.0.1:{m.client_port}" for m in members)
        store = f"etcd://{endpoints}?prefix=/bench"
        controllers = [start_controller(procs, workdir, f"controller-{i + 1}", store)
                       for i in range(ETCD_CONTROLLERS)]
    say(f"{kind}: controllers at {', '.join(c.url for c in controllers)}")
    # a slow answer is a figure, not a lost controller: a thousand agents taking in each
    # other's registrations keep a controller busy well past the client's default 30 s
    return Cloud(controllers, members,
                 [Client(c.url, ADMIN_TOKEN, timeout=ADMIN_TIMEOUT) for c in controllers])


def run_scenario(kind: str, args: argparse.Namespace, procs: Processes, workdir: Path
                 ) -> dict[str, Any]:
    cloud = start_cloud(kind, procs, workdir)
    observed = Observed()
    rng = random.Random(args.seed)
    per_worker = -(-args.agents // args.workers)
    t_start = time.monotonic()
    workers = [Worker(procs, workdir, [c.url for c in cloud.controllers], first,
                      min(per_worker, args.agents - first + 1), args, observed)
               for first in range(1, args.agents + 1, per_worker)]
    cloud.workers = workers
    by_host = {h: w for w in workers for h in w.hosts}
    say(f"{kind}: {args.agents} agents in {len(workers)} worker processes, registering")
    if not observed.wait(_counting(kind, "registered", observed.registered, args.agents),
                         args.timeout):
        raise BenchError(f"only {len(observed.registered)} of {args.agents} agents registered "
                         f"in {args.timeout}s")
    t_registered = max(observed.registered.values())
    if args.steady_only:
        say(f"{kind}: all registered after {t_registered - t_start:.1f}s")
        return _steady_only(kind, cloud, workers, observed, args, t_registered - t_start)
    say(f"{kind}: all registered after {t_registered - t_start:.1f}s; creating networks")

    n_networks = max(1, -(-args.ports // PORTS_PER_NETWORK))
    nets = cloud.admins[0].create_many("network", [
        {"name": f"net{i}", "project_id": f"t{i % 50}", "provider:network_type": "vxlan"}
        for i in range(n_networks)])
    cloud.admins[0].create_many("subnet", [
        {"network_id": n["id"], "cidr": "10.0.0.0/24", "ip_version": 4, "gateway_ip": None}
        for n in nets])
    hosts = [host_name(i) for i in range(1, args.agents + 1)]
    placement = [(nets[i % n_networks]["id"], rng.choice(hosts)) for i in range(args.ports)]
    on_network: dict[str, set[str]] = {}
    for net_id, host in placement:
        on_network.setdefault(net_id, set()).add(host)

    say(f"{kind}: creating {args.ports} ports on {n_networks} networks in bulks of {BULK}")
    before = cloud.costs()
    t_writes = time.monotonic()
    for chunk, offset in enumerate(range(0, args.ports, BULK)):
        items = [{"network_id": net_id, "name": f"vm{offset + i}", "device_id": f"vm{offset + i}",
                  "device_owner": "compute:bench", "binding:host_id": host}
                 for i, (net_id, host) in enumerate(placement[offset:offset + BULK])]
        created = cloud.admins[chunk % len(cloud.admins)].create_many("port", items)
        plugs: dict[Worker, list[list[str]]] = {}
        for port in created:
            host = port["binding:host_id"]
            plugs.setdefault(by_host[host], []).append([host, port["id"], port["mac_address"]])
        for worker, items_ in plugs.items():
            worker.send({"plug": items_})
    t_written = time.monotonic()
    # what each agent must know: its ports and every port of the networks it has one on
    per_network = {n: sum(1 for net, _ in placement if net == n) for n in on_network}
    wanted = {h: 0 for h in hosts}
    for net_id, on in on_network.items():
        for host in on:
            wanted[host] += per_network[net_id]
    for worker in workers:
        worker.send({"expect": {h: wanted[h] for h in worker.hosts}})
    say(f"{kind}: ports written in {t_written - t_writes:.1f}s; waiting for every agent to "
        "converge")
    converged = observed.wait(_counting(kind, "converged", observed.converged, args.agents),
                              args.timeout)
    t_converged = max(observed.converged.values(), default=time.monotonic())
    after = cloud.costs()
    statuses = [p["status"] for p in cloud.admins[0].list("port")]
    active = statuses.count("ACTIVE")
    say(f"{kind}: {len(observed.converged)} of {args.agents} agents converged after "
        f"{t_converged - t_writes:.1f}s; {active} of {len(statuses)} ports ACTIVE")

    lost: list[str] = []
    answers: list[float] = []
    firsts: list[float] = []
    delays = probe(kind, cloud, observed, args, nets, hosts, on_network, rng, lost, answers,
                   firsts)
    steady = measure_steady(kind, cloud, workers, observed, args)
    for worker in workers:
        worker.send({"stop": True})
    observed.wait(lambda: len(observed.totals) == len(workers), 30.0)
    totals = {k: sum(t.get(k, 0) for t in observed.totals)
              for k in ("flows", "rounds", "plans", "controller_errors", "snapshots",
                        "failovers")}
    final = cloud.costs()
    for client in cloud.admins:
        client.close()
    return {
        "store": kind, "controllers": len(cloud.controllers), "etcd_members": len(cloud.etcd),
        "agents": args.agents, "ports": args.ports, "networks": n_networks,
        "converged": converged, "agents_converged": len(observed.converged),
        "ports_active": active,
        "seconds_register": round(t_registered - t_start, 2),
        "seconds_port_writes": round(t_written - t_writes, 2),
        "seconds_converge": round(t_converged - t_writes, 2),
        "controller_cpu_s_converge": round(after["controller_cpu_s"] - before["controller_cpu_s"],
                                           2),
        "agents_cpu_s_converge": round(after["agents_cpu_s"] - before["agents_cpu_s"], 2),
        **({"etcd_cpu_s_converge": round(after["etcd_cpu_s"] - before["etcd_cpu_s"], 2)}
           if cloud.etcd else {}),
        "probe_delays_ms": [round(d * 1000, 1) for d in delays],
        "probes_not_seen_in_time": lost,
        "probe_api_answer_p50_ms": _ms(_percentile(answers, 0.5)),
        "probe_first_agent_p50_ms": _ms(_percentile(firsts, 0.5)),
        "probe_p50_ms": _ms(_percentile(delays, 0.5)),
        "probe_p99_ms": _ms(_percentile(delays, 0.99)),
        "steady": steady, "costs_end": final, "agent_totals": totals,
    }


def _steady_only(kind: str, cloud: Cloud, workers: list[Worker], observed: Observed,
                 args: argparse.Namespace, seconds_register: float) -> dict[str, Any]:
    """--steady-only: registered agents, no networks or ports; only what liveness costs."""
    settled = _settle(kind, cloud, args)
    steady = measure_steady(kind, cloud, workers, observed, args)
    for worker in workers:
        worker.send({"stop": True})
    observed.wait(lambda: len(observed.totals) == len(workers), 30.0)
    final = cloud.costs()
    for client in cloud.admins:
        client.close()
    return {"store": kind, "controllers": len(cloud.controllers),
            "etcd_members": len(cloud.etcd), "agents": args.agents, "ports": 0,
            "agents_registered": len(observed.registered),
            "seconds_register": round(seconds_register, 2),
            "seconds_until_all_alive": settled, "steady": steady,
            "costs_end": final}


def _settle(kind: str, cloud: Cloud, args: argparse.Namespace) -> float:
    """Seconds until every agent is alive on two looks in a row: on a loaded machine the
    first registered may have died waiting for their first report while the controllers took
    the last registrations, and their comebacks are no steady state."""
    t0 = time.monotonic()
    streak = 0
    while streak < 2:
        if time.monotonic() - t0 > args.timeout:
            raise BenchError(f"agents still dying after {args.timeout}s")
        time.sleep(2.0)
        dead = sum(1 for a in cloud.admins[0].list("agent") if not a["alive"])
        streak = streak + 1 if dead == 0 else 0
        if dead:
            say(f"{kind}: {dead} agents dead, waiting for them to report")
    return round(time.monotonic() - t0, 1)


def _counting(kind: str, what: str, done: dict[str, float], total: int
              ) -> Callable[[], bool]:
    """True when ``done`` holds every agent; says how many every 10 s meanwhile."""
    last_said = [time.monotonic()]

    def check() -> bool:
        if time.monotonic() - last_said[0] > 10:
            last_said[0] = time.monotonic()
            say(f"{kind}:   {len(done)} of {total} {what}")
        return len(done) == total

    return check


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def probe(kind: str, cloud: Cloud, observed: Observed, args: argparse.Namespace,
          nets: list[dict[str, Any]], hosts: list[str], on_network: dict[str, set[str]],
          rng: random.Random, lost: list[str], answers: list[float], firsts: list[float]
          ) -> list[float]:
    """Single port creates, one at a time: API call to the last interested agent's view.
    Probes that some interested agent did not see in time are named in ``lost``; how long
    the API took to answer each create goes to ``answers``, the delay to the first interested
    agent to ``firsts`` (apart from the last, it tells fan-out from delivery)."""
    say(f"{kind}: {args.probes} single port creates, timing their arrival at the agents")
    delays: list[float] = []
    for k in range(args.probes):
        net = rng.choice(nets)
        host = rng.choice(hosts)
        interested = on_network.get(net["id"], set()) | {host}
        name = f"{PROBE_PREFIX}{kind}-{k}"
        t0 = time.monotonic()
        cloud.admins[k % len(cloud.admins)].create(
            "port", network_id=net["id"], name=name, device_owner="compute:bench",
            **{"binding:host_id": host})
        answers.append(time.monotonic() - t0)
        if observed.wait(_all_seen(observed, name, interested), PROBE_WAIT):
            delays.append(max(observed.seen[name][h] for h in interested) - t0)
            firsts.append(min(observed.seen[name][h] for h in interested) - t0)
        else:
            missing = len(interested - set(observed.seen.get(name, {})))
            say(f"{kind}:   probe {name}: {missing} of {len(interested)} interested agents "
                f"did not see it in {PROBE_WAIT:.0f}s (left out of p50/p99)")
            lost.append(name)
        time.sleep(0.2)
    return delays


def _all_seen(observed: Observed, name: str, hosts: set[str]) -> Callable[[], bool]:
    return lambda: hosts <= set(observed.seen.get(name, {}))


def measure_steady(kind: str, cloud: Cloud, workers: list[Worker], observed: Observed,
                   args: argparse.Namespace) -> dict[str, Any]:
    """Only heartbeats and idle long polls for ``args.steady`` seconds: what they cost."""
    say(f"{kind}: steady state for {args.steady:.0f}s (heartbeats every "
        f"{args.heartbeat_interval:.0f}s, rounds of {args.poll_interval}s, long polls of "
        f"{args.long_poll}s)")

    def heartbeats() -> int:
        observed.heartbeats.clear()
        for worker in workers:
            worker.send({"tell": "heartbeats"})
        observed.wait(lambda: len(observed.heartbeats) == len(workers), 30.0)
        return sum(observed.heartbeats)

    hb0, c0, e0, t0 = heartbeats(), cloud.costs(), \
        cloud.etcd_counters() if cloud.etcd else {}, time.monotonic()
    time.sleep(args.steady)
    hb1, c1, e1, t1 = heartbeats(), cloud.costs(), \
        cloud.etcd_counters() if cloud.etcd else {}, time.monotonic()
    window = t1 - t0
    beats = hb1 - hb0
    out: dict[str, Any] = {
        "seconds": round(window, 1), "heartbeats_per_s": round(beats / window, 1),
        "controller_cpu_per_s": round((c1["controller_cpu_s"] - c0["controller_cpu_s"])
                                      / window, 3),
        "agents_cpu_per_s": round((c1["agents_cpu_s"] - c0["agents_cpu_s"]) / window, 3)}
    if e0:
        keys = (e1["etcd_mvcc_put_total"] - e0["etcd_mvcc_put_total"]
                + e1["etcd_mvcc_delete_total"] - e0["etcd_mvcc_delete_total"])
        proposals = (e1["etcd_server_proposals_committed_total"]
                     - e0["etcd_server_proposals_committed_total"])
        txns = e1["etcd_mvcc_txn_total"] - e0["etcd_mvcc_txn_total"]
        out.update(etcd_key_writes_per_s=round(keys / window, 1),
                   etcd_txns_per_s=round(txns / window, 1),
                   etcd_proposals_per_s=round(proposals / window, 1),
                   etcd_key_writes_per_heartbeat=round(keys / beats, 2) if beats else None,
                   etcd_proposals_per_heartbeat=round(proposals / beats, 2) if beats else None,
                   etcd_cpu_per_s=round((c1["etcd_cpu_s"] - c0["etcd_cpu_s"]) / window, 3))
    return out


ROWS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("controllers / etcd members", lambda r: f"{r['controllers']} / {r['etcd_members']}"),
    ("store dir: synced write p50/p99 ms", lambda r: "{p50}/{p99}".format(
        **r["store_sync_write_ms"])),
    ("agents converged", lambda r: f"{r['agents_converged']}/{r['agents']}"),
    ("agents registered (--steady-only)", lambda r: f"{r['agents_registered']}/{r['agents']}"),
    ("ports ACTIVE", lambda r: f"{r['ports_active']}/{r['ports']}"),
    ("register all agents (s)", lambda r: r["seconds_register"]),
    ("then until all alive (s)", lambda r: r["seconds_until_all_alive"]),
    ("port API writes (s)", lambda r: r["seconds_port_writes"]),
    ("converge from first write (s)", lambda r: r["seconds_converge"]),
    ("controller CPU s, converge", lambda r: r["controller_cpu_s_converge"]),
    ("etcd CPU s, converge", lambda r: r.get("etcd_cpu_s_converge", "-")),
    ("agents' CPU s, converge", lambda r: r["agents_cpu_s_converge"]),
    ("agents' plans (whole run)", lambda r: r["agent_totals"]["plans"]),
    ("controller RSS MB (each)", lambda r: ",".join(f"{x:.0f}" for x in
                                                    r["costs_end"]["controller_rss_mb"])),
    ("controller peak RSS MB", lambda r: ",".join(f"{x:.0f}" for x in
                                                  r["costs_end"]["controller_peak_rss_mb"])),
    ("port create: API answer p50 ms", lambda r: r["probe_api_answer_p50_ms"]),
    ("port create -> first agent p50 ms", lambda r: r["probe_first_agent_p50_ms"]),
    ("port create -> last agent p50 ms", lambda r: r["probe_p50_ms"]),
    ("port create -> last agent p99 ms", lambda r: r["probe_p99_ms"]),
    ("probes late (> 15 s, left out)", lambda r: len(r["probes_not_seen_in_time"])),
    ("steady: heartbeats/s", lambda r: r["steady"]["heartbeats_per_s"]),
    ("steady: controller CPU s/s", lambda r: r["steady"]["controller_cpu_per_s"]),
    ("steady: agents' CPU s/s", lambda r: r["steady"]["agents_cpu_per_s"]),
    ("steady: etcd key writes/s", lambda r: r["steady"].get("etcd_key_writes_per_s", "-")),
    ("steady: etcd proposals/s", lambda r: r["steady"].get("etcd_proposals_per_s", "-")),
    ("steady: etcd keys per heartbeat",
     lambda r: r["steady"].get("etcd_key_writes_per_heartbeat", "-")),
    ("steady: etcd CPU s/s", lambda r: r["steady"].get("etcd_cpu_per_s", "-")),
]


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    width = max(len(label) for label, _ in ROWS)
    lines = [f"{'':{width}}  " + "  ".join(f"{n:>14}" for n in names)]
    for label, get in ROWS:
        lines.append(f"{label:{width}}  " + "  ".join(f"{_cell(get, results[n])!s:>14}"
                                                      for n in names))
    return "\n".join(lines)


def _cell(get: Callable[[dict[str, Any]], Any], result: dict[str, Any]) -> Any:
    try:
        return get(result)
    except KeyError:  # a figure this run did not measure (--steady-only)
        return "-"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.control_plane", description=__doc__.split("\n\n")[0],
        epilog="The issue's goal size: --agents 1000 --ports 20000 (several minutes).")
    parser.add_argument("--agents", type=int, default=100, help="simulated hypervisors")
    parser.add_argument("--ports", type=int, default=2000, help="VM ports, spread at random")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes the agents' threads are spread over")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"scenarios to run, of {','.join(SCENARIOS)}")
    parser.add_argument("--probes", type=int, default=10, help="single port creates timed")
    parser.add_argument("--steady", type=float, default=15.0,
                        help="seconds of steady state measured (heartbeats, idle polls)")
    parser.add_argument("--poll-interval", type=float, default=0.5,
                        help="the agents' round (the agent's default)")
    parser.add_argument("--long-poll", type=float, default=25.0,
                        help="the agents' controller long poll (the agent's default; at most "
                        "--poll-interval: one poll per round, in the round)")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0,
                        help="the agents' heartbeat (the agent's default)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="longest wait for registration or convergence, seconds")
    parser.add_argument("--steady-only", action="store_true",
                        help="register the agents and measure only the steady state (no "
                             "networks, ports or probes): what liveness costs, in minutes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--store-dir", type=Path, default=None,
                        help="where the scenario's data (SQLite file, etcd members) and logs "
                             "go, in a temporary directory of its own (default: the system's "
                             "temporary directory); e.g. /dev/shm to take the disk's sync "
                             "time out of the figures (the table shows it either way)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON")
    args = parser.parse_args(argv)
    scenarios = [s for s in args.only.split(",") if s]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown or not scenarios:
        parser.error(f"--only {args.only!r}: scenarios are {', '.join(SCENARIOS)}")
    if args.agents < 1 or args.ports < 0 or args.workers < 1 or args.probes < 0:
        parser.error("--agents and --workers must be at least 1; --ports, --probes not negative")
    args.scenarios = scenarios
    args.workers = min(args.workers, args.agents)
    return args


def sync_write_ms(directory: Path, writes: int = 40) -> dict[str, float]:
    """p50 and p99 of a 4 KiB write with O_DSYNC in `directory` (what an fsync costs there)."""
    path = directory / "sync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o600)
    took = []
    try:
        block = b"\0" * 4096
        for _ in range(writes):
            start = time.perf_counter()
            os.write(fd, block)
            took.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return {"p50": _ms(_percentile(took, 0.5)), "p99": _ms(_percentile(took, 0.99))}


def _say_unconverged(workdir: Path, most: int = 5) -> None:
    """The first agents the workers logged as not converged, and why (before the logs go)."""
    lines = [line for log in sorted(workdir.glob("agents-*.log"))
             for line in log.read_text(errors="replace").splitlines()
             if " not converged: " in line]
    for line in lines[:most]:
        say(line)
    if len(lines) > most:
        say(f"... and {len(lines) - most} more agents not converged")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    results: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for kind in args.scenarios:
        procs = Processes()
        workdir = Path(tempfile.mkdtemp(prefix=f"tn-cpbench-{kind}-", dir=args.store_dir))
        try:
            # etcd syncs every raft entry to disk (SQLite far less often): how long a synced
            # write takes where the data lives decides much of the etcd scenario's figures
            synced = sync_write_ms(workdir)
            say(f"{kind}: a synced 4 KiB write in {workdir} takes {synced['p50']} ms (p50), "
                f"{synced['p99']} ms (p99)")
            results[kind] = run_scenario(kind, args, procs, workdir)
            results[kind]["store_sync_write_ms"] = synced
        except (BenchError, ClientError) as exc:
            # a controller that no longer answers in time ends the scenario, not the run
            errors[kind] = str(exc)
            say(f"{kind} failed: {exc}")
        except KeyboardInterrupt:
            say("interrupted: stopping every process the benchmark started")
            return 130
        finally:
            # a second Ctrl-C must not cut the cleanup short and leave processes behind
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            procs.stop_all()
            _say_unconverged(workdir)
            shutil.rmtree(workdir, ignore_errors=True)
            signal.signal(signal.SIGINT, previous)
    argv_text = " ".join(["python -m bench.control_plane", *(argv or sys.argv[1:])])
    report = {"command": argv_text, "results": results, "errors": errors,
              "settings": {k: v for k, v in vars(args).items() if k not in ("out",)}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "control_plane.json").write_text(json.dumps(report, indent=2, default=str))
    if results:
        ports = 0 if args.steady_only else args.ports
        print(f"{args.agents} agents, {ports} ports ({argv_text})")
        print(table(results))
    for kind, error in errors.items():
        print(f"{kind}: FAILED: {error}")
    say(f"JSON in {args.out / 'control_plane.json'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
