"""Intent against what a switch holds: pure comparisons, one per thing compared.

Nothing here reads a switch or a controller; each function is handed the wanted state and
the installed one and returns findings, so the logic is tested on made-up tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tunnelnet.agent.backend import SwitchPort
from tunnelnet.agent.desired import TunnelPort
from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.packet import tunnel_kinds
from tunnelnet.verify.findings import Finding, FindingKind
from tunnelnet.verify.flows import FlowKey, ParsedFlow


@dataclass(slots=True)
class FlowDiff:
    findings: list[Finding] = field(default_factory=list)
    checked: int = 0  # installed flows compared with intent
    learned: int = 0  # installed flows left alone as learned (learn() entries)


def is_learned(flow: ParsedFlow, families: Collection[tuple[int, int]],
               wanted: Mapping[FlowKey, ParsedFlow]) -> bool:
    """Made by a learn() action of a wanted flow (its table and priority, and a timeout, as
    learn() gives them), and not itself a flow the agent installs: traffic's, not intent."""
    return ((flow.table, flow.priority) in families and flow.hard_timeout > 0
            and flow.key not in wanted)


def learned_families(wanted: Mapping[FlowKey, ParsedFlow]) -> set[tuple[int, int]]:
    return {family for flow in wanted.values() for family in flow.learns}


def _outputs_note(have: ParsedFlow, want: ParsedFlow, ports: Mapping[int, str]) -> str:
    """What a changed flow lost or gained among its outputs, with the ports' names."""
    def named(numbers: set[int]) -> str:
        return ", ".join(f"output:{n}" + (f" ({ports[n]})" if n in ports else "")
                         for n in sorted(numbers))
    lacks, extra = set(want.outputs) - set(have.outputs), set(have.outputs) - set(want.outputs)
    notes = [*([f"lacks {named(lacks)}"] if lacks else []),
             *([f"has extra {named(extra)}"] if extra else [])]
    return f"; {'; '.join(notes)}" if notes else ""


def diff_flows(bridge: str, wanted: Mapping[FlowKey, ParsedFlow],
               installed: Sequence[ParsedFlow], *, cookie: int,
               ofports: Mapping[int, str]) -> FlowDiff:
    """Missing, unexpected, changed and stale-cookie flows, and outputs to absent ports.

    A flow of the wanted key with other actions is one finding (other actions), not a missing
    and an unexpected one; an unwanted flow of another cookie is named stale (it is what an
    agent restart's sweep failed to remove), one of the current cookie or none unexpected.
    Outputs are checked on every installed flow, learned ones too: a learned entry towards a
    deleted tunnel port is a black hole until it times out. ``ofports``: the bridge's port
    numbers and names."""
    out = FlowDiff()
    families = learned_families(wanted)
    seen: set[FlowKey] = set()
    for flow in installed:
        for port in flow.outputs:
            if port not in ofports:
                out.findings.append(Finding(
                    FindingKind.DEAD_OUTPUT, bridge, flow.text(),
                    f"port {port} is not on {bridge}"))
        if is_learned(flow, families, wanted):
            out.learned += 1
            continue
        out.checked += 1
        seen.add(flow.key)
        want = wanted.get(flow.key)
        if want is None:
            stale = flow.cookie not in (cookie, 0)
            out.findings.append(Finding(
                FindingKind.STALE_COOKIE if stale else FindingKind.UNEXPECTED_FLOW, bridge,
                flow.text(),
                f"cookie {flow.cookie:#x} is not the agent's {cookie:#x}, and the controller's "
                "state asks for no such flow" if stale else
                "the controller's state asks for no such flow"))
            continue
        if flow.actions != want.actions:
            out.findings.append(Finding(
                FindingKind.WRONG_ACTIONS, bridge, flow.text(),
                f"wanted actions={want.actions}{_outputs_note(flow, want, ofports)}"))
        if flow.cookie != cookie:
            out.findings.append(Finding(FindingKind.STALE_COOKIE, bridge, flow.text(),
                                        f"cookie {flow.cookie:#x} is not the agent's "
                                        f"{cookie:#x}"))
    for key, want in wanted.items():
        if key not in seen:
            out.findings.append(Finding(FindingKind.MISSING_FLOW, bridge,
                                        want.text(cookie=False)))
    return out


def current_cookie(canary: ParsedFlow | None, installed: Iterable[ParsedFlow]) -> int | None:
    """The agent generation a hypervisor's flows belong to: the cookie of br-int's canary
    flow, which every agent start installs first under its new cookie; without a canary, the
    cookie most flows carry (None when the switch holds no flows)."""
    if canary is not None:
        return canary.cookie
    counts = Counter(f.cookie for f in installed)
    return counts.most_common(1)[0][0] if counts else None


def diff_tunnels(wanted: Sequence[TunnelPort], ports: Iterable[SwitchPort],
                 known_ips: Collection[str], bridge: str) -> list[Finding]:
    """Tunnel ports: wanted ones missing, and any tunnel port (by type, whatever its name)
    that is not wanted: towards an address no agent of the controller has, or to a known
    host the plan does not tunnel to (with l2population, no network shared)."""
    findings: list[Finding] = []
    by_name = {t.name: t for t in wanted}
    have: set[str] = set()
    for port in ports:
        if not tunnel_kinds.is_tunnel(port.type):
            continue
        have.add(port.name)
        remote = port.options.get("remote_ip", "")
        want = by_name.get(port.name)
        if want is not None and want.remote_ip == remote and want.network_type == port.type:
            continue
        what = f"{port.type} to {remote or '(no remote_ip)'}"
        if remote not in known_ips:
            findings.append(Finding(FindingKind.UNKNOWN_TUNNEL, bridge, port.name,
                                    f"{what}: no agent of the controller has that address"))
        else:
            findings.append(Finding(FindingKind.UNEXPECTED_TUNNEL, bridge, port.name,
                                    f"{what}: " + (f"wanted {want.network_type} to "
                                                   f"{want.remote_ip}" if want else
                                                   "the controller's state needs no tunnel "
                                                   "to it")))
    for tunnel in wanted:
        if tunnel.name not in have:
            findings.append(Finding(FindingKind.MISSING_TUNNEL, bridge, tunnel.name,
                                    f"{tunnel.network_type} to {tunnel.remote_ip}"))
    return findings


@dataclass(frozen=True, slots=True)
class VnicIntent:
    """What one vNIC's tag should be, and in whose words (the VM, its network)."""

    port: str
    tag: int
    about: str  # "VM red1's port 9f3c... on red-net" or "iface-id 9f3c... (unknown port)"


def diff_tags(intents: Iterable[VnicIntent], tags: Mapping[str, int | None],
              bridge: str) -> list[Finding]:
    """vNICs on a VLAN other than intent's: bound ones left dead, bound ones on another
    network's (or no network's) VLAN, unbound ones not dead."""
    findings: list[Finding] = []
    for intent in intents:
        tag = tags.get(intent.port)
        if tag == intent.tag:
            continue
        shown = "no tag (a trunk of every VLAN)" if tag is None else f"tag {tag}"
        if intent.tag == DEAD_VLAN:
            kind, want = FindingKind.NOT_DEAD, f"should be on the dead VLAN {DEAD_VLAN}"
        elif tag == DEAD_VLAN:
            kind, want = FindingKind.DEAD_VLAN, f"should be on local VLAN {intent.tag}"
        else:
            kind, want = FindingKind.WRONG_VLAN, f"should be on local VLAN {intent.tag}"
        findings.append(Finding(kind, bridge, intent.port,
                                f"{intent.about}: has {shown}, {want}"))
    return findings
