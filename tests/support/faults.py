"""Issue 21's faults on a FaultLab, each judged from outside the agent and the switch: ping's
own statistics (10 ms apart, both tenants across hypervisors), tcpdump in the VMs, the flows
and ports each switch reports, the controller's records of ports. Shared by
tests/adversarial/test_faults_lab.py (small sizes) and bench/faults.py (the issue's sizes);
each fault gives rows of the table bench/results/faults.json holds.
"""

from __future__ import annotations

import random
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from support.faults_lab import (
    HYPERVISORS,
    FaultLab,
    LabError,
    cookie_of,
    dangling,
    table_of,
    wait_for,
)
from support.late_proxy import LateProxy
from support.pinger import Pinger, PingRun

PING_INTERVAL = 0.01
_SEQ = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .* icmp_seq=(\d+)", re.MULTILINE)
TENANT_PINGS = (("r1", "r2"), ("b1", "b2"))  # red over VXLAN, blue over GRE, hv1 -> hv2
NETWORKS = ("red-net", "blue-net")


@dataclass(frozen=True)
class Row:
    what: str
    amount: str
    lost: str
    measured: str
    goal: str
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return asdict(self)


# -- instruments ----------------------------------------------------------------------------

@contextmanager
def tenant_pings(lab: FaultLab) -> Iterator[dict[str, PingRun]]:
    """A ping every 10 ms from each tenant's hv1 VM to its hv2 VM; the dict is filled with
    ping's statistics when the block ends."""
    runs: dict[str, PingRun] = {}
    pingers = {f"{src}->{dst}": Pinger(lab.vm(src)["netns"], lab.vm(dst)["ip"],
                                       interval=PING_INTERVAL, deadline=600)
               for src, dst in TENANT_PINGS}
    try:
        time.sleep(0.5)
        yield runs
        time.sleep(0.5)
        for name, pinger in pingers.items():
            runs[name] = pinger.stop()
    finally:
        for pinger in pingers.values():
            pinger.__exit__(None, None, None)


IN_FLIGHT = 3  # echoes still on their way when ping is stopped (30 ms at 10 ms apart)


def lost(run: PingRun) -> int:
    """Echoes without a reply, but for the last few sent just before ping was stopped, whose
    replies were still on their way (SIGINT ends ping at once); more unanswered at the end
    than that is a loss, all of it."""
    replied = [int(m.group(2)) for m in _SEQ.finditer(run.output)]
    trailing = run.sent - max(replied, default=0)
    return run.lost - trailing if 0 <= trailing <= IN_FLIGHT else run.lost


def lost_of(runs: dict[str, PingRun]) -> int:
    return sum(lost(run) for run in runs.values())


def missing(runs: dict[str, PingRun]) -> dict[str, list[tuple[int, float]]]:
    """Per ping: each lost sequence number with the wall-clock time of the reply before it,
    to lay beside the daemons' logs."""
    found: dict[str, list[tuple[int, float]]] = {}
    for name, run in runs.items():
        replies = {int(m.group(2)): float(m.group(1)) for m in _SEQ.finditer(run.output)}
        if not replies:
            continue
        last, gaps = 0.0, []
        for seq in range(1, max(replies) + 1):
            if seq in replies:
                last = replies[seq]
            else:
                gaps.append((seq, last))
        found[name] = gaps[:20]
    return found


def pings_text(runs: dict[str, PingRun]) -> str:
    return ", ".join(f"{name} {lost(run)}/{run.sent}" for name, run in runs.items())


@contextmanager
def vm_captures(lab: FaultLab, work: Path) -> Iterator[dict[str, Path]]:
    """tcpdump on every VM's eth0, inside the VM (the frames the switch delivered to it)."""
    paths = {vm: work / f"{vm}.pcap" for vm in lab.state["vms"]}
    procs = [subprocess.Popen(["ip", "netns", "exec", lab.vm(vm)["netns"], "tcpdump", "-U",
                               "-n", "-i", "eth0", "-w", str(path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for vm, path in paths.items()]
    try:
        time.sleep(1.0)  # tcpdump listens once it has opened the interface
        yield paths
        time.sleep(0.3)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def tenant_macs(lab: FaultLab) -> dict[str, set[str]]:
    """Tenant -> the MACs of every port on its networks, as the controller lists them."""
    with lab.api() as api:
        ports = api.list("port")
    by_network = {lab.network_id(n): lab.state["networks"][n]["tenant"] for n in NETWORKS}
    macs: dict[str, set[str]] = {}
    for port in ports:
        tenant = by_network.get(port["network_id"])
        if tenant is not None:
            macs.setdefault(tenant, set()).add(port["mac_address"].lower())
    return macs


def cross_tenant_frames(lab: FaultLab, paths: dict[str, Path]) -> dict[str, int]:
    """VM -> frames it received whose source MAC is a port of another tenant's network."""
    macs = tenant_macs(lab)
    seen = {}
    for vm, path in paths.items():
        tenant = lab.vm(vm)["tenant"]
        foreign = set().union(*(m for t, m in macs.items() if t != tenant))
        frames: Any = rdpcap(str(path)) if path.exists() and path.stat().st_size else []
        seen[vm] = sum(1 for frame in frames
                       if Ether in frame and frame[Ether].src.lower() in foreign)
    return seen


# -- 200 ports bound on hv1 -----------------------------------------------------------------

def bind_ports(lab: FaultLab, hv: str, count: int, timeout: float = 120) -> list[str]:
    """``count`` ports through the API bound to ``hv``, half on each tenant's network, each
    with a vNIC (internal port) on its br-int; returns once the controller says every one is
    ACTIVE (its agent bound it)."""
    ids = []
    with lab.api() as api:
        for i in range(count):
            port = lab.create_port(api, NETWORKS[i % 2], hv, f"fx-{hv}-{i}")
            lab.plug(hv, port)
            ids.append(port["id"])

        def all_active() -> bool:
            status = {p["id"]: p["status"] for p in api.list("port")}
            return all(status.get(i) == "ACTIVE" for i in ids)
        wait_for(f"{count} ports on {hv} ACTIVE", all_active, timeout, interval=0.5)
    return ids


# -- kill -9 of hv1's agent -----------------------------------------------------------------

class AgentVariant:
    PLAIN = "plain"
    LATE = "controller answers late"
    CONTROLLER_DOWN = "controller down during the restart"


def agent_restart(lab: FaultLab, variant: str, *, delay: float = 30.0,
                  outage: float = 5.0, ports: int = 0) -> Row:
    """kill -9 of hv1's agent and a start of it, under pings: goal 0 lost, then no flow of
    the old cookie left and br-tun's tables 20/21/22 as before."""
    hv = "hv1"
    before = lab.tun_tables(hv)
    old = lab.canary_cookie(hv)
    if old is None:
        raise LabError("hv1's br-int has no canary flow before the fault")
    proxy: LateProxy | None = None
    timeline: dict[str, float] = {}
    with tenant_pings(lab) as runs:
        start = time.monotonic()
        if variant == AgentVariant.CONTROLLER_DOWN:
            lab.kill("server")
        lab.kill("agent-hv1")
        if variant == AgentVariant.LATE:
            upstream = Path(lab.state["server_url"].removeprefix("unix:"))
            proxy = LateProxy(lab.directory / "late.sock", upstream, delay)
            url = proxy.url
            lab.set_argv("agent-hv1", lambda argv: _with_controller(argv, url))
        lab.start("agent-hv1")
        timeline["agent started"] = time.monotonic() - start
        untouched = True
        if variant == AgentVariant.CONTROLLER_DOWN:
            time.sleep(outage)
            # with no controller the new agent must leave the switch as it was
            untouched = lab.canary_cookie(hv) == old and lab.tun_tables(hv) == before
            lab.start("server")
            timeline["controller started"] = time.monotonic() - start
        limit = 60.0 + (3 * delay if variant == AgentVariant.LATE else 0.0)
        try:
            wait_for("a new agent generation without the old cookie",
                     lambda: _swept(lab, hv, old), limit, interval=0.2)
            timeline["old cookie gone"] = time.monotonic() - start
        except LabError:
            timeline.pop("old cookie gone", None)
    if proxy is not None:
        proxy.delay = 0.0  # the agent keeps talking through it, now without a delay
        lab.proxies.append(proxy)
    after = lab.tun_tables(hv)
    missed = lost_of(runs)
    swept = "old cookie gone" in timeline
    equal = after == before
    amount = (f"{ports} ports on hv1" + (f", answers {delay:.0f} s late"
                                          if variant == AgentVariant.LATE else "")
              + (f", controller down {outage:.0f} s" if variant == AgentVariant.CONTROLLER_DOWN
                 else ""))
    measured = ((f"old cookie gone after {timeline['old cookie gone']:.1f} s" if swept
                 else f"old cookie STILL THERE after {limit:.0f} s") + "; tables 20/21/22 "
                f"{'equal' if equal else 'DIFFER'} ({len(after)} flows)"
                + ("" if untouched else "; switch changed while no controller answered"))
    return Row(f"kill -9 agent hv1, restart ({variant})", amount, pings_text(runs), measured,
               "0 lost, no old-cookie flow, tables 20/21/22 equal",
               missed == 0 and swept and equal and untouched,
               {"timeline": timeline, "before": before, "after": after,
                "only_before": sorted(set(before) - set(after)),
                "only_after": sorted(set(after) - set(before)),
                "switch_untouched_without_controller": untouched, "missing": missing(runs)})


def _with_controller(argv: list[str], url: str) -> list[str]:
    at = argv.index("--controller")
    return [*argv[:at + 1], url, *argv[at + 2:]]


def _swept(lab: FaultLab, hv: str, old: int) -> bool:
    canary = lab.canary_cookie(hv)
    return canary is not None and canary != old and old not in lab.cookies(hv)


# -- kill -9 of hv1's vswitchd --------------------------------------------------------------

def vswitchd_restart(lab: FaultLab, work: Path, *, ports: int = 0) -> list[Row]:
    """kill -9 of hv1's vswitchd and a start of it under pings and captures: bridges back
    fail-secure, no frame across tenants, the agent reprograms (a new cookie generation on
    the canary, the old one swept) within 2 s of the switch answering; the forwarding gap is
    ping's longest silence."""
    hv = "hv1"
    old = lab.canary_cookie(hv)
    if old is None:
        raise LabError("hv1's br-int has no canary flow before the fault")
    timeline: dict[str, float] = {}
    fail_modes: dict[str, str] = {}
    restored: dict[str, list[str]] = {}
    with vm_captures(lab, work) as paths, tenant_pings(lab) as runs:
        start = time.monotonic()
        lab.kill("vswitchd-hv1")
        timeline["switch gone"] = time.monotonic() - start
        lab.start("vswitchd-hv1")
        wait_for("hv1's vswitchd answering", lambda: lab.answers(hv), 30, interval=0.01)
        timeline["switch answers"] = time.monotonic() - start
        fail_modes = {b["name"]: str(b.get("fail_mode")) for b in lab.bridges(hv)}
        restored = {b: lab.flows(hv, b) for b in ("br-int", "br-tun")}
        wait_for("a new agent generation on hv1's canary",
                 lambda: lab.canary_cookie(hv) not in (None, old), 30, interval=0.01)
        timeline["agent reprogrammed"] = time.monotonic() - start
        wait_for("the old generation swept", lambda: _swept(lab, hv, old), 30, interval=0.05)
        timeline["old cookie swept"] = time.monotonic() - start
        time.sleep(1.0)
    crossed = cross_tenant_frames(lab, paths)
    gap = max(run.silence for run in runs.values())
    noticed = timeline["agent reprogrammed"] - timeline["switch answers"]
    secure = bool(fail_modes) and all(mode == "secure" for mode in fail_modes.values())
    clean = verify_clean(lab, hv)
    amount = f"{ports} ports on hv1"
    details = {"timeline": timeline, "fail_modes": fail_modes, "cross_tenant": crossed,
               "missing": missing(runs), "verify_clean": clean,
               "flows_at_answer": {b: len(f) for b, f in restored.items()},
               "silence": {name: run.silence for name, run in runs.items()}}
    return [
        Row("kill -9 vswitchd hv1: isolation while it restarts", amount, pings_text(runs),
            f"cross-tenant frames {sum(crossed.values())}; bridges "
            + ", ".join(f"{b} {mode}" for b, mode in sorted(fail_modes.items())),
            "0 cross-tenant frames, every bridge fail-secure",
            secure and sum(crossed.values()) == 0, details),
        Row("kill -9 vswitchd hv1: agent reprograms", amount, pings_text(runs),
            f"new cookie on the canary {noticed:.2f} s after the switch answered "
            f"({timeline['switch answers']:.2f} s after the kill), old swept; verify "
            f"{'clean' if clean else 'NOT CLEAN'}", "at most 2 s, verify clean",
            noticed <= 2.0 and clean, details),
        Row("kill -9 vswitchd hv1: forwarding gap", amount, pings_text(runs),
            f"longest ping silence {gap:.2f} s", "at most 1 s", gap <= 1.0, details),
    ]


def verify_clean(lab: FaultLab, hv: str) -> bool:
    """``tunnelnet verify`` on ``hv`` (the controller's intent against the switch): no
    finding, asked again for a few seconds while the agent settles."""
    deadline = time.monotonic() + 10
    while True:
        done = lab.tn("verify", "--quiet", "--host", hv, timeout=60)
        if done.returncode == 0 or time.monotonic() > deadline:
            return done.returncode == 0
        time.sleep(0.5)


def installed(lab: FaultLab, hv: str) -> dict[str, list[str]]:
    """What the agent installed on each bridge, cookies included: learned entries (made by
    traffic, with a hard_timeout) and counters left out."""
    return {b: sorted(line for line in lab.flows(hv, b) if "hard_timeout=" not in line)
            for b in ("br-int", "br-tun")}


def vswitchd_restores_its_flows(lab: FaultLab) -> Row:
    """kill -9 of hv1's vswitchd while its agent is down too: what the restarted switch holds
    before any agent is back is what the agent had installed (judged against dump-flows
    before the kill, cookies included); the agent started again replaces and sweeps that
    generation and verify is clean."""
    hv = "hv1"
    old = lab.canary_cookie(hv)
    if old is None:
        raise LabError("hv1's br-int has no canary flow before the fault")
    lab.kill("agent-hv1")
    time.sleep(1.0)  # the snapshot follows the last change within 0.5 s
    before = installed(lab, hv)
    lab.kill("vswitchd-hv1")
    lab.start("vswitchd-hv1")
    wait_for("hv1's vswitchd answering", lambda: lab.answers(hv), 30, interval=0.01)
    after = installed(lab, hv)
    lab.start("agent-hv1")
    swept = True
    try:
        wait_for("the agent's new generation", lambda: _swept(lab, hv, old), 60, interval=0.2)
    except LabError:
        swept = False
    clean = verify_clean(lab, hv)
    equal = after == before
    counts = ", ".join(f"{b} {len(f)}" for b, f in sorted(after.items()))
    return Row("kill -9 vswitchd hv1 with its agent down: flows restored", "hv1",
               "-", f"restored flows {'equal to' if equal else 'DIFFER from'} the dump before "
               f"the kill ({counts}); agent's new generation "
               f"{'swept the old' if swept else 'NOT in place'}; verify "
               f"{'clean' if clean else 'NOT CLEAN'}",
               "restored = installed; the agent then reprograms", equal and swept and clean,
               {b: {"only_before": sorted(set(before[b]) - set(after[b])),
                    "only_after": sorted(set(after[b]) - set(before[b]))} for b in before})


# -- random start order ---------------------------------------------------------------------

STARTED = ("server", *(f"agent-{hv}" for hv in HYPERVISORS))


def flood_lists(lab: FaultLab, hv: str) -> dict[int, set[str]]:
    """Tunnel key -> the hypervisors br-tun's table 22 floods that network's frames to."""
    ports = {p["ofport"]: p for p in lab.ports(hv, "br-tun")}
    by_ip = lab.hv_of_ip()
    lists: dict[int, set[str]] = {}
    for line in lab.flows(hv, "br-tun"):
        if "table=22" not in line or "set_tunnel:" not in line:
            continue
        key = int(line.split("set_tunnel:")[1].split(",")[0], 16)
        outs = [int(n) for n in line.split("actions=")[1].split(",")
                if n.startswith("output:") for n in [n.removeprefix("output:")]]
        lists[key] = {by_ip.get(ports[o]["options"].get("remote_ip", ""), f"?{o}")
                      if o in ports else f"missing:{o}" for o in outs}
    return lists


def expected_flood_lists(lab: FaultLab) -> dict[str, dict[int, set[str]]]:
    """From the controller's ports: a hypervisor hosts a network when a port of it is bound
    there; each host floods to the network's other hosts, a non-host has no flood flow."""
    with lab.api() as api:
        ports = api.list("port")
    hosts: dict[int, set[str]] = {}
    for name in NETWORKS:
        net_id, key = lab.network_id(name), lab.segment(name)
        hosts[key] = {p["binding:host_id"] for p in ports
                      if p["network_id"] == net_id and p.get("binding:host_id") in HYPERVISORS}
    return {hv: {key: members - {hv} for key, members in hosts.items() if hv in members}
            for hv in HYPERVISORS}


def flood_lists_right(lab: FaultLab) -> tuple[bool, dict[str, Any]]:
    want = expected_flood_lists(lab)
    have = {hv: flood_lists(lab, hv) for hv in HYPERVISORS}
    return want == have, {"want": _printable(want), "have": _printable(have)}


def _replanned(lab: FaultLab, killed: dict[str, int | None]) -> dict[str, bool]:
    """Per hypervisor: its new agent has planned (its canary carries a cookie other than the
    killed agent's) and table 22 holds that agent's flows alone."""
    found = {}
    for hv in HYPERVISORS:
        canary = lab.canary_cookie(hv)
        found[hv] = canary is not None and canary != killed[hv] and {
            cookie_of(line) for line in lab.flows(hv, "br-tun") if table_of(line) == 22
        } == {canary}
    return found


def _table22_of(lab: FaultLab) -> dict[str, dict[str, Any]]:
    return {hv: {"at": time.monotonic(),
                 "ports": {p["name"]: p["ofport"] for p in lab.ports(hv, "br-tun")},
                 "table22": [line for line in lab.flows(hv, "br-tun") if table_of(line) == 22]}
            for hv in HYPERVISORS}


def _printable(lists: dict[str, dict[int, set[str]]]) -> dict[str, dict[str, list[str]]]:
    return {hv: {hex(k): sorted(v) for k, v in by_key.items()} for hv, by_key in lists.items()}


@dataclass
class Churn:
    """Ports created (bound to a random hypervisor, vNIC plugged) and deleted (vNIC first)
    while the daemons start; API calls are retried while no controller answers."""

    lab: FaultLab
    rng: random.Random
    operations: int
    live: list[tuple[str, str, str]] = field(default_factory=list)  # (port id, hv, tap)
    done: int = 0
    retries: int = 0

    def run(self) -> None:
        with self.lab.api(timeout=5.0) as api:
            for i in range(self.operations):
                if self.live and self.rng.random() < 0.4:
                    port_id, hv, tap = self.live.pop(self.rng.randrange(len(self.live)))
                    self.lab.unplug(hv, tap)
                    self._retry(partial(api.delete, "port", port_id))
                else:
                    hv = self.rng.choice(HYPERVISORS)
                    net = self.rng.choice(NETWORKS)
                    port = self._retry(partial(self.lab.create_port, api, net, hv,
                                               f"churn-{self.rng.random():.6f}-{i}"))
                    self.live.append((port["id"], hv, self.lab.plug(hv, port)))
                self.done += 1
                time.sleep(self.rng.uniform(0.0, 0.2))

    def _retry(self, call: Any) -> Any:
        from tunnelnet.errors import TunnelnetError

        deadline = time.monotonic() + 60
        while True:
            try:
                return call()
            except TunnelnetError:
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                time.sleep(0.2)

    def clear(self) -> None:
        with self.lab.api() as api:
            for port_id, hv, tap in self.live:
                self.lab.unplug(hv, tap)
                api.delete("port", port_id)
        self.live.clear()


def start_order(lab: FaultLab, seed: int, *, operations: int = 12, max_delay: float = 2.0,
                settle: float = 45.0) -> Row:
    """Controller and every agent killed, then started in a random order with random delays
    while ports come and go; settled, each hypervisor's flood list per network must be the
    set of hypervisors hosting it."""
    rng = random.Random(seed)
    for daemon in STARTED:
        lab.kill(daemon)
    # the killed agents' flows stay on the switches until each new agent plans: they are not
    # this start's result, however right they happen to be
    killed = {hv: lab.canary_cookie(hv) for hv in HYPERVISORS}
    order = list(STARTED)
    rng.shuffle(order)
    delays = [rng.uniform(0.0, max_delay) for _ in order]
    churn = Churn(lab, random.Random(seed * 7919), operations)
    worker = threading.Thread(target=churn.run, daemon=True)
    worker.start()
    for daemon, pause in zip(order, delays, strict=True):
        time.sleep(pause)
        lab.start(daemon)
    worker.join(timeout=120)
    detail: dict[str, Any] = {}

    def settled() -> bool:
        # BFD read just before the flood lists: a tunnel its session took down is out of
        # them by design (agent/liveness.py), which a failed seed must be able to tell
        detail["tunnels_before"] = _bfd_of_tunnels(lab)
        detail["replanned"] = _replanned(lab, killed)
        ok, found = flood_lists_right(lab)
        detail.update(found)
        # the lines the lists were read from, and the ports they name: a seed right once and
        # wrong a second later shows what changed between the two reads
        detail["reads"] = [*detail.get("reads", [])[-1:], _table22_of(lab)]
        return ok and all(detail["replanned"].values())

    # settled: right, and still right a second later (a BFD session to a peer whose tunnel
    # was just made again may take a tunnel out for a round or two: by design); a relapse
    # goes on waiting, within the same time
    start = time.monotonic()
    took: float | None = None
    relapses = 0
    while took is None:
        try:
            wait_for("flood lists right", settled,
                     max(0.0, settle - (time.monotonic() - start)), interval=0.5)
        except LabError:
            break
        right_at = time.monotonic() - start
        time.sleep(1.0)
        if settled():
            took = right_at
        else:
            relapses += 1
            if time.monotonic() - start > settle:
                break
    detail["relapses"] = relapses
    if took is None:  # what BFD says of each tunnel: a down one leaves the flood lists
        detail["tunnels"] = _bfd_of_tunnels(lab)
        # whose flood lists these are: the running agent generation's (its canary's cookie),
        # or one killed before it that the new agent never replaced (it never planned)
        detail["cookies"] = {hv: {"canary": hex(lab.canary_cookie(hv) or 0),
                                  "killed": hex(killed[hv] or 0),
                                  "table22": sorted({hex(cookie_of(line))
                                                     for line in lab.flows(hv, "br-tun")
                                                     if table_of(line) == 22})}
                             for hv in HYPERVISORS}
        # and what each agent said meanwhile: which of its plans left a peer out, and why
        # (the agent writes its log to its --log-file in the hypervisor's run directory;
        # the lab's logs/agent-HV.log holds only what it prints before that is open)
        detail["agent_logs"] = {hv: _tail(lab.rundir(hv) / "agent.log", 200)
                                for hv in HYPERVISORS}
    live = len(churn.live)
    churn.clear()
    return Row(f"random start order, seed {seed}",
               " ".join(f"{d}+{p:.1f}s" for d, p in zip(order, delays, strict=True))
               + f"; {churn.done} port creates/deletes",
               "-", (f"flood lists right {took:.1f} s after the last start and port change"
                     + (f" (wrong again a second later {relapses}x before)" if relapses else ""))
               if took is not None
               else f"flood lists right at times ({relapses}x) but never for a second in "
                    f"{settle:.0f} s" if relapses
               else f"flood lists still wrong after {settle:.0f} s",
               "flood list per network = hypervisors hosting it",
               took is not None, {**detail, "settle_seconds": took, "order": order,
                                  "delays": delays,
                                  "ports_live": live, "api_retries": churn.retries})


def _bfd_of_tunnels(lab: FaultLab) -> dict[str, dict[str, Any]]:
    return {hv: {p["name"]: p.get("bfd_status") for p in lab.ports(hv, "br-tun")
                 if p["name"].startswith(("vxlan-", "gre-"))} for hv in HYPERVISORS}


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return [f"({path} unreadable: {exc})"]


# -- delete / re-plug one VM's port ---------------------------------------------------------

def _no_dangling(lab: FaultLab, hv: str, left: list[str]) -> bool:
    """No flow of br-int or br-tun names a port number its bridge lacks (else in ``left``)."""
    left.clear()
    for bridge in ("br-int", "br-tun"):
        ofports = {int(p["ofport"]) for p in lab.ports(hv, bridge)}
        left.extend(dangling(lab.flows(hv, bridge), ofports))
    return not left


def _old_port_gone(lab: FaultLab, hv: str, former: list[int], left: list[str]) -> bool:
    """No flow of br-int matches one of the vNIC's last former port numbers (the switch's
    own selection, as ``dump-flows br-int in_port=N``: a read of 3,000 flows on a loaded
    machine takes longer than the 2 s measured), and br-tun names no missing port. The last
    three, not one: a round that read the ports before a re-plug applies their flows after
    it, a number late."""
    left.clear()
    for number in former[-3:]:
        left.extend(lab.flows(hv, "br-int", f"in_port={number}"))
    ofports = {int(p["ofport"]) for p in lab.ports(hv, "br-tun")}
    left.extend(dangling(lab.flows(hv, "br-tun"), ofports))
    return not left


def replug_cycles(lab: FaultLab, cycles: int, *, vm: str = "r1", within: float = 2.0) -> Row:
    """The VM's vNIC deleted from br-int and plugged again under a new ofport, ``cycles``
    times; after each, no flow may still match a former port number ``within`` seconds
    after the re-plug; after the last, a full read of br-int and br-tun must find no flow
    naming a port number its bridge lacks."""
    info = lab.vm(vm)
    hv, tap = info["hypervisor"], info["tap"]
    port = {"id": info["port_id"], "mac_address": info["mac"]}
    worst = 0.0
    failed: list[dict[str, Any]] = []
    first_ofport = 1000
    former = [next(int(p["ofport"]) for p in lab.ports(hv, "br-int") if p["name"] == tap)]
    for cycle in range(cycles):
        lab.unplug(hv, tap)
        lab.plug(hv, port, kind="system", name=tap, ofport=first_ofport + cycle)
        start = time.monotonic()
        left: list[str] = []
        # seconds until a read (its end) found none left
        try:
            took = wait_for("no flow on a former port",
                            partial(_old_port_gone, lab, hv, former, left), within + 5,
                            interval=0.05)
        except LabError:
            took = time.monotonic() - start
        if took > within:
            failed.append({"cycle": cycle, "seconds": took, "flows": list(left)})
        worst = max(worst, took)
        former.append(first_ofport + cycle)
    # and once, every flow of both bridges: none names a port its bridge lacks
    time.sleep(within)
    if not _no_dangling(lab, hv, left):
        failed.append({"cycle": "after the last", "full_read": list(left)})
    reply = subprocess.run(["ip", "netns", "exec", info["netns"], "ping", "-c", "3", "-i",
                            "0.2", "-W", "2", lab.vm("r2")["ip"]], capture_output=True,
                           text=True, check=False, timeout=30)
    works = reply.returncode == 0
    return Row("delete/re-plug of one VM's port (new ofport each time)", f"{cycles} cycles",
               "-", f"worst {worst:.2f} s until no flow names a former port; "
               f"{len(failed)} cycles over {within:.0f} s (or a missing port at the end); "
               f"ping after: {'answered' if works else 'NOT answered'}",
               f"none left after {within:.0f} s", not failed and works,
               {"failed": failed[:5], "worst": worst})
