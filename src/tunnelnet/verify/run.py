"""One verification: the controller's state once, then each hypervisor's switch in turn."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunnelnet.agent.controller import ControllerCache, Snapshot
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.http_controller import AGENT_TYPE
from tunnelnet.agent.service import BR_INT, BR_TUN
from tunnelnet.agent.view import CloudView
from tunnelnet.client.http import Client
from tunnelnet.errors import TunnelnetError
from tunnelnet.verify import diff, intent
from tunnelnet.verify.findings import Finding, FindingKind, HostReport
from tunnelnet.verify.flows import FIRST_RESERVED_PORT, ParsedFlow, UnreadableFlow, parse_line
from tunnelnet.verify.readers import SwitchReader

Say = Callable[[str], None]


class VerifyError(TunnelnetError):
    """The question cannot be answered: no controller, no such hypervisor, bad options."""


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    reader: SwitchReader


@dataclass(frozen=True, slots=True)
class CloudState:
    """The controller's side, read once for every hypervisor."""

    view: CloudView
    configs: Mapping[str, AgentConfig]  # host -> its agent's configuration
    labels: Mapping[str, str]  # port and network ids -> names to print
    known_ips: frozenset[str]  # every agent's tunnel address
    revision: int
    alive: Mapping[str, bool] = field(default_factory=dict)  # host -> its agent is alive


@dataclass(slots=True)
class Report:
    hosts: list[HostReport]
    cloud_revision: int
    unchecked: list[str] = field(default_factory=list)  # agents' hosts not asked
    # the controller's revision once the switches were read, when it had moved on: findings
    # may then be changes the agents were still applying
    revision_after: int | None = None
    seconds: float = 0.0
    controller_seconds: float = 0.0

    @property
    def findings(self) -> int:
        return sum(len(h.findings) for h in self.hosts)

    @property
    def errors(self) -> int:
        return sum(1 for h in self.hosts if h.error is not None)

    def exit_code(self) -> int:
        """0 clean, 1 a finding, 2 a hypervisor that could not be read (the answer is
        incomplete, whatever the others say)."""
        if self.errors:
            return 2
        return 1 if self.findings else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "clean": self.exit_code() == 0, "findings": self.findings, "errors": self.errors,
            "by_kind": dict(sorted(Counter(f.kind.value for h in self.hosts
                                           for f in h.findings).items())),
            "controller_revision": self.cloud_revision,
            "controller_revision_after": self.revision_after,
            "hosts": [h.to_json() for h in self.hosts], "unchecked": self.unchecked,
            "timing": {"total_s": round(self.seconds, 3),
                       "controller_s": round(self.controller_seconds, 3),
                       "hosts_s": {h.host: round(h.seconds, 3) for h in self.hosts}},
        }


def agent_config(obj: Mapping[str, Any]) -> AgentConfig | None:
    """A hypervisor's agent configuration as its agent registered it; None without a
    tunnel address (such an agent programs no tunnels and cannot be planned for)."""
    conf = obj.get("configurations") or {}
    ip = conf.get("tunneling_ip")
    if not ip:
        return None
    return AgentConfig(host=str(obj["host"]), tunnel_ip=str(ip),
                       tunnel_types=frozenset(str(t) for t in conf.get("tunnel_types") or ()),
                       l2pop=bool(conf.get("l2_population")),
                       arp_responder=bool(conf.get("arp_responder_enabled")),
                       bridge_mappings={str(k): str(v) for k, v in
                                        (conf.get("bridge_mappings") or {}).items()})


def read_cloud(client: Client) -> CloudState:
    try:
        snap = client.snapshot()
    except TunnelnetError as exc:
        raise VerifyError(f"controller {client.url}: {exc}") from exc
    agents = [a for a in snap.agents if a.get("agent_type", AGENT_TYPE) == AGENT_TYPE]
    cache = ControllerCache()
    cache.load(Snapshot(snap.networks, snap.ports, agents, snap.revision))
    configs = {c.host: c for c in map(agent_config, agents) if c is not None}
    labels = {str(n["id"]): str(n.get("name") or n["id"]) for n in snap.networks}
    labels.update({str(p["id"]): f"port {p.get('name') or p['id']}" for p in snap.ports})
    return CloudState(view=cache.view(), configs=configs, labels=labels,
                      known_ips=frozenset(c.tunnel_ip for c in configs.values()),
                      revision=snap.revision,
                      alive={str(a["host"]): bool(a.get("alive", True)) for a in agents})


def read_switch(reader: SwitchReader, bridges: Sequence[str]) -> intent.SwitchState:
    present = frozenset(reader.list_bridges())
    ports = {b: reader.list_ports(b) for b in bridges if b in present}
    flows: dict[str, list[ParsedFlow]] = {}
    unreadable: dict[str, list[tuple[str, str]]] = {}
    for bridge in bridges:
        if bridge not in present:
            continue
        flows[bridge] = []
        for line in reader.dump_flows(bridge):
            try:
                flows[bridge].append(parse_line(line))
            except UnreadableFlow as exc:
                # one flow in words the parser lacks must not hide what the others say
                unreadable.setdefault(bridge, []).append((line.strip(), str(exc)))
    return intent.SwitchState(bridges=present, ports=ports, flows=flows,
                              unreadable=unreadable)


def verify_host(host: str, reader: SwitchReader, cloud: CloudState) -> HostReport:
    """One hypervisor's findings (an error instead when it cannot be read or planned)."""
    started = time.monotonic()
    report = HostReport(host=host, switch=reader.kind, agent_alive=cloud.alive.get(host))
    try:
        conf = cloud.configs.get(host)
        if conf is None:
            raise VerifyError(f"the controller has no agent on {host} with a tunnel address: "
                              "nothing to compare its switch with")
        # an agent on Open vSwitch installs the MTU doctor's flows (its --switch ovs says so,
        # as the reader's kind does here)
        conf = dataclasses.replace(conf, mtu_doctor=reader.kind == "ovs")
        bridges = intent.agent_bridges(conf)
        switch = read_switch(reader, bridges)
        _compare(report, conf, cloud, switch, bridges)
    except TunnelnetError as exc:
        report.error = str(exc)
    report.seconds = time.monotonic() - started
    return report


def _compare(report: HostReport, conf: AgentConfig, cloud: CloudState,
             switch: intent.SwitchState, bridges: Sequence[str]) -> None:
    want = intent.compute(conf, cloud.view, switch, cloud.labels)
    report.cookie = want.cookie
    for net_id, vid in want.local_vlans.items():
        name = cloud.labels.get(net_id, net_id)
        report.local_vlans[name] = vid
        report.vlan_source[name] = want.vlan_source.get(net_id, "")
    found: list[Finding] = []
    for bridge in bridges:
        if bridge not in switch.bridges:
            found.append(Finding(FindingKind.MISSING_BRIDGE, bridge, bridge,
                                 "the agent makes it (fail-secure) on start"))
    for bridge, port in want.missing_ports:
        found.append(Finding(FindingKind.MISSING_PORT, bridge, port))
    for bridge, lines in switch.unreadable.items():
        found += [Finding(FindingKind.UNREADABLE_FLOW, bridge, line, why)
                  for line, why in lines]
    for bridge in bridges:
        if bridge not in switch.bridges:
            continue
        ofports = {p.ofport: p.name for p in switch.ports.get(bridge, ())}
        if bridge in want.flows:
            result = diff.diff_flows(bridge, want.flows[bridge], switch.flows.get(bridge, ()),
                                     cookie=want.cookie, ofports=ofports)
            found += result.findings
            report.flows_checked += result.checked
            report.learned_ignored += result.learned
        else:
            # nothing can be planned for it (a patch port is missing): outputs still checked
            found += [Finding(FindingKind.DEAD_OUTPUT, bridge, f.text(),
                              f"port {p} is not on {bridge}")
                      for f in switch.flows.get(bridge, ()) for p in f.outputs
                      if p not in ofports and p < FIRST_RESERVED_PORT]
    if BR_TUN in switch.bridges:
        found += diff.diff_tunnels(want.tunnels, switch.ports.get(BR_TUN, ()), cloud.known_ips,
                                   BR_TUN)
    int_ports = switch.ports.get(BR_INT, ())
    found += diff.diff_tags(want.vnics, {p.name: p.tag for p in int_ports}, BR_INT)
    report.findings = sorted(found, key=lambda f: (f.bridge, f.kind.value, f.subject))


def verify(client: Client, targets: Sequence[Target], *, say: Say | None = None) -> Report:
    """Every target hypervisor against the controller's state; ``say`` hears progress."""
    tell = say or (lambda _line: None)
    started = time.monotonic()
    tell("reading the controller's state")
    cloud = read_cloud(client)
    controller_seconds = time.monotonic() - started
    hosts = []
    for n, target in enumerate(targets, 1):
        tell(f"[{n}/{len(targets)}] {target.host} ({target.reader.kind})")
        hosts.append(verify_host(target.host, target.reader, cloud))
    asked = {t.host for t in targets}
    unchecked = sorted(h for h in cloud.configs if h not in asked)
    report = Report(hosts=hosts, cloud_revision=cloud.revision, unchecked=unchecked,
                    controller_seconds=controller_seconds)
    if report.findings:
        # a finding made while the controller was changing may be a change in flight: say so
        try:
            after = read_cloud(client).revision
        except VerifyError:
            after = cloud.revision  # gone meanwhile: the findings stand as read
        report.revision_after = after if after != cloud.revision else None
    report.seconds = time.monotonic() - started
    return report
