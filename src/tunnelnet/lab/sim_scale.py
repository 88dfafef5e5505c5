"""A large cloud in the simulation: a generated topology, converged, checked and measured.

``tunnelnet lab sim --hypervisors 1000 --tenants 100 --vms 20000`` comes here. The topology
is generated (seeded, so runs compare): every tenant gets the same address range (so
equal IPs across tenants are the rule, as in the demo), VMs are spread over the networks in
turn and over the hypervisors at random. The figures: time to converge (every agent
programmed, VM ports ACTIVE), reachability by trace for same-network pairs (all of them, or
a sample that covers every network when there are too many, and the report says which),
isolation for pairs of different networks, memory, and flows and tunnels per hypervisor.
"""

from __future__ import annotations

import random
import resource
import time
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network
from statistics import mean
from typing import Any

from tunnelnet.lab.sim import Progress, SimError, SimLab
from tunnelnet.lab.topology import Hypervisor, Network, Topology, Vm
from tunnelnet.packet import tunnel_kinds

UNDERLAY = "172.16.0.0/16"
NETWORK_TYPES = (*tunnel_kinds.names(), "mixed")  # mixed: each tunnel kind in turn
TENANT_BASE = "10.0.0.0"


@dataclass(frozen=True, slots=True)
class ScaleSpec:
    hypervisors: int
    tenants: int
    vms: int
    networks_per_tenant: int = 2
    network_type: str = "vxlan"  # a tunnel kind, or mixed (the kinds in turn)
    seed: int = 1
    pairs: int = 400
    # random: any VM on any hypervisor; tenant: each tenant's VMs on its own slice of the
    # hypervisors (affinity, as schedulers often end up), where l2pop saves the most
    placement: str = "random"  # same-network pairs checked by trace at most (all when fewer)
    isolation_pairs: int = 100  # pairs of different networks checked

    def check(self) -> None:
        if not 1 <= self.hypervisors <= 60_000:
            raise SimError(f"--hypervisors {self.hypervisors}: must be 1..60000")
        if self.tenants < 1 or self.networks_per_tenant < 1:
            raise SimError("--tenants and --networks-per-tenant must be at least 1")
        if self.vms < 0:
            raise SimError(f"--vms {self.vms}: must not be negative")
        if self.placement not in ("random", "tenant"):
            raise SimError(f"--placement {self.placement!r}: random or tenant")
        if self.network_type not in NETWORK_TYPES:
            raise SimError(f"--network-type {self.network_type!r}: "
                           f"{', '.join(NETWORK_TYPES[:-1])} or mixed")
        if self.tenants * self.networks_per_tenant > 100_000:
            # segments would fit (24-bit VNIs); the limit only keeps a typo from running
            # for hours
            raise SimError("more than 100000 networks: use fewer tenants or networks per "
                           "tenant")


def generate(spec: ScaleSpec) -> Topology:
    spec.check()
    rng = random.Random(spec.seed)
    underlay = IPv4Network(UNDERLAY)
    hosts = [Hypervisor(f"hv{i + 1}", str(underlay.network_address + i + 1))
             for i in range(spec.hypervisors)]
    tenants = tuple(f"t{i + 1}" for i in range(spec.tenants))
    n_networks = spec.tenants * spec.networks_per_tenant
    per_network = -(-spec.vms // n_networks) if spec.vms else 1
    # the smallest prefix with room for the network's VMs, the gateway and broadcast
    prefix = min(30, 32 - max(2, (per_network + 3 - 1).bit_length()))
    cidr = f"{TENANT_BASE}/{prefix}"
    networks = []
    for t, tenant in enumerate(tenants):
        for n in range(spec.networks_per_tenant):
            index = t * spec.networks_per_tenant + n
            kinds = tunnel_kinds.names()
            kind = spec.network_type if spec.network_type != "mixed" else \
                kinds[index % len(kinds)]
            networks.append(Network(f"{tenant}-n{n + 1}", tenant, kind, cidr))
    vms = []
    slice_size = max(1, spec.hypervisors // spec.tenants)
    for i in range(spec.vms):
        net = networks[i % n_networks]
        if spec.placement == "tenant":
            first = (tenants.index(net.tenant) * slice_size) % spec.hypervisors
            host = hosts[(first + rng.randrange(slice_size)) % spec.hypervisors]
        else:
            host = rng.choice(hosts)
        vms.append(Vm(f"vm{i + 1}", net.tenant, net.name, host.name))
    return Topology(UNDERLAY, 1500, tuple(hosts), tenants, tuple(networks), tuple(vms))


@dataclass
class Spread:
    min: int
    mean: float
    max: int

    @classmethod
    def of(cls, values: list[int]) -> Spread:
        return cls(min(values), round(mean(values), 1), max(values)) if values else \
            cls(0, 0.0, 0)


@dataclass
class ScaleReport:
    l2pop: bool
    hypervisors: int
    tenants: int
    networks: int
    vms: int
    seconds_agents_start: float
    seconds_controller_writes: float
    seconds_converge: float
    cpu_seconds_converge: float  # this process's CPU time: comparable on a busy machine
    passes: int
    converged: bool
    ports_active: int
    seconds_reachability: float
    pairs_same_network_total: int
    pairs_checked: int
    pairs_sampled: bool
    pairs_reached: int
    isolation_checked: int
    isolation_held: int
    seconds_total: float
    cpu_seconds_total: float
    rss_mb: float
    peak_rss_mb: float
    flows_per_hypervisor: Spread
    br_tun_flows_per_hypervisor: Spread
    tunnels_per_hypervisor: Spread
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.converged and self.ports_active == self.vms
                and self.pairs_reached == self.pairs_checked
                and self.isolation_held == self.isolation_checked)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def rss_mb() -> tuple[float, float]:
    """Resident memory now and at its peak, in MiB (Linux)."""
    now = 0.0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    now = int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return round(now, 1), round(peak, 1)


def _pairs(lab: SimLab, spec: ScaleSpec, rng: random.Random
           ) -> tuple[list[tuple[str, str]], int, bool]:
    by_network: dict[str, list[str]] = {}
    for vm in lab.vms.values():
        by_network.setdefault(vm.network, []).append(vm.name)
    total = sum(len(v) * (len(v) - 1) for v in by_network.values())
    if total <= spec.pairs:
        return [(a, b) for vms in by_network.values() for a in vms for b in vms if a != b], \
            total, False
    # every network with two VMs once, then random pairs of random networks up to the budget
    nets = [sorted(v) for v in by_network.values() if len(v) > 1]
    chosen = [tuple(rng.sample(vms, 2)) for vms in nets]
    while len(chosen) < spec.pairs:
        chosen.append(tuple(rng.sample(rng.choice(nets), 2)))
    return [(a, b) for a, b in chosen], total, True


def _isolation_pairs(lab: SimLab, spec: ScaleSpec, rng: random.Random
                     ) -> list[tuple[str, str]]:
    """Pairs of VMs of different networks, half of them with the very same IP address."""
    vms = sorted(lab.vms.values(), key=lambda v: v.name)
    if len({v.network for v in vms}) < 2:
        return []
    by_ip: dict[str, list[str]] = {}
    for vm in vms:
        by_ip.setdefault(vm.ip, []).append(vm.name)
    same_ip = [names for names in by_ip.values() if len(names) > 1]
    out: list[tuple[str, str]] = []
    tries = 0
    while len(out) < spec.isolation_pairs and tries < spec.isolation_pairs * 20:
        tries += 1
        if same_ip and len(out) % 2 == 0:
            a, b = rng.sample(rng.choice(same_ip), 2)
        else:
            a, b = rng.choice(vms).name, rng.choice(vms).name
        if lab.vms[a].network != lab.vms[b].network:
            out.append((a, b))
    return out


def run(spec: ScaleSpec, *, l2pop: bool, progress: Progress | None = None) -> ScaleReport:
    say = progress or (lambda _msg: None)
    topo = generate(spec)
    rng = random.Random(spec.seed + 1)
    started, cpu_started = time.perf_counter(), time.process_time()
    lab = SimLab(topo, l2pop=l2pop, progress=say)
    lab.start_agents()
    t_agents = time.perf_counter()
    lab.create_tenants()
    lab.plug_vms()
    t_writes, cpu_writes = time.perf_counter(), time.process_time()
    report = lab.converge()
    t_converged, cpu_converged = time.perf_counter(), time.process_time()
    statuses = lab.port_statuses()
    active = sum(1 for vm in lab.vms.values() if statuses.get(vm.port_id) == "ACTIVE")
    say(f"{active} of {len(lab.vms)} VM ports ACTIVE")

    pairs, total, sampled = _pairs(lab, spec, rng)
    say(f"reachability by trace: {len(pairs)} same-network pairs"
        f"{f' (a sample of {total})' if sampled else ' (all)'}")
    failures: list[str] = []
    reached = 0
    for result in lab.verify(pairs):
        if result.reached and not result.surprise:
            reached += 1
        elif len(failures) < 20:
            failures.append(f"{result.src} -> {result.dst}: {result.detail}")
    isolation = _isolation_pairs(lab, spec, rng)
    say(f"isolation by trace: {len(isolation)} pairs of different networks")
    held = 0
    for result in lab.verify(isolation):
        if not result.surprise:
            held += 1
        elif len(failures) < 40:
            failures.append(f"ISOLATION {result.src} -> {result.dst}: {result.detail}")
    t_done = time.perf_counter()

    flows, tun_flows, tunnels = [], [], []
    for hv, switch in lab.switches.items():
        counts = {name: sum(len(t.classifier) for t in br.tables.values())
                  for name, br in switch.bridges.items()}
        flows.append(sum(counts.values()))
        tun_flows.append(counts.get("br-tun", 0))
        tunnels.append(len(lab.tunnels(hv)))
    now, peak = rss_mb()
    return ScaleReport(
        l2pop=l2pop, hypervisors=len(topo.hypervisors), tenants=len(topo.tenants),
        networks=len(topo.networks), vms=len(topo.vms),
        seconds_agents_start=round(t_agents - started, 2),
        seconds_controller_writes=round(t_writes - t_agents, 2),
        seconds_converge=round(t_converged - t_writes, 2),
        cpu_seconds_converge=round(cpu_converged - cpu_writes, 2), passes=report.passes,
        converged=report.converged, ports_active=active,
        seconds_reachability=round(t_done - t_converged, 2),
        pairs_same_network_total=total, pairs_checked=len(pairs), pairs_sampled=sampled,
        pairs_reached=reached, isolation_checked=len(isolation), isolation_held=held,
        seconds_total=round(t_done - started, 2),
        cpu_seconds_total=round(time.process_time() - cpu_started, 2), rss_mb=now,
        peak_rss_mb=peak,
        flows_per_hypervisor=Spread.of(flows), br_tun_flows_per_hypervisor=Spread.of(tun_flows),
        tunnels_per_hypervisor=Spread.of(tunnels), failures=failures)
