"""The report in words: one block per hypervisor, findings first, then the sum."""

from __future__ import annotations

from tunnelnet.verify.findings import HostReport
from tunnelnet.verify.run import Report


def _host(h: HostReport) -> list[str]:
    agent = {True: "", False: ", its agent is DEAD", None: ", no agent"}[h.agent_alive]
    head = f"{h.host} ({h.switch}{agent}): "
    if h.error is not None:
        return [f"{head}NOT VERIFIED: {h.error}"]
    vlans = ", ".join(f"{n}={v}" for n, v in sorted(h.local_vlans.items())) or "none"
    facts = (f"{h.flows_checked} flows checked, {h.learned_ignored} learned ignored; "
             f"cookie {h.cookie:#x}; local VLANs {vlans}" if h.cookie is not None else "")
    if not h.findings:
        return [f"{head}clean - {facts}"]
    lines = [f"{head}{len(h.findings)} finding(s) - {facts}"]
    lines += [f"  {f.line()}" for f in h.findings]
    return lines


def to_text(report: Report) -> str:
    lines: list[str] = []
    for h in report.hosts:
        lines += _host(h)
    if report.revision_after is not None:
        lines.append(f"note: the controller moved from revision {report.cloud_revision} to "
                     f"{report.revision_after} while verify ran: findings may be changes the "
                     "agents are still applying; verify again")
    if report.unchecked:
        lines.append(f"not asked: {', '.join(report.unchecked)} (agents the controller knows)")
    verdict = ("clean" if report.exit_code() == 0 else
               f"{report.findings} finding(s)"
               + (f", {report.errors} hypervisor(s) not verified" if report.errors else ""))
    lines.append(f"verified {len(report.hosts)} hypervisor(s) against controller revision "
                 f"{report.cloud_revision} in {report.seconds:.2f} s: {verdict}")
    return "\n".join(lines) + "\n"
