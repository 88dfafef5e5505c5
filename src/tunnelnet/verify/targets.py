"""Whom to ask: a lab's controller and hypervisors from its record, or ones given by hand."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tunnelnet.client.http import Client
from tunnelnet.lab.state import LabState, LabStateError, StateFile, find_sim
from tunnelnet.verify.readers import SimReader, SwitchReader, ovs_reader, vswitchd_reader
from tunnelnet.verify.run import Target, VerifyError


def _lab_record(directory: Path) -> tuple[LabState, Path]:
    """The record of the lab in ``directory`` (or of the simulated lab ``up --sim`` put in
    the fallback directory)."""
    file = StateFile(directory)
    if not file.exists():
        sim_dir = find_sim(directory)
        if sim_dir is not None:
            return StateFile(sim_dir).load(), sim_dir
    return file.load(), directory


def lab_targets(directory: Path, hosts: Sequence[str] = ()) -> tuple[Client, list[Target]]:
    """The lab's controller (its URL and admin token) and a reader per hypervisor."""
    try:
        state, where = _lab_record(directory)
    except LabStateError as exc:
        raise VerifyError(str(exc)) from exc
    if not state.server_url:
        raise VerifyError(f"the lab in {where} recorded no controller URL")
    targets: list[Target] = []
    for name, info in sorted(state.hypervisors.items()):
        reader: SwitchReader
        if state.sim:
            reader = SimReader(where, name)
        elif info.get("switch") == "ovs":
            reader = ovs_reader(info["rundir"])
        else:
            reader = vswitchd_reader(Path(info["rundir"]))
        targets.append(Target(name, reader))
    return Client(state.server_url, state.admin_token, timeout=30.0), pick(targets, hosts)


def pick(targets: list[Target], hosts: Sequence[str]) -> list[Target]:
    if not hosts:
        return targets
    known = {t.host for t in targets}
    unknown = [h for h in hosts if h not in known]
    if unknown:
        raise VerifyError(f"no hypervisor {', '.join(map(repr, unknown))} (hypervisors: "
                          f"{', '.join(sorted(known)) or 'none'})")
    return [t for t in targets if t.host in hosts]


def given_targets(switches: Sequence[str], ovs: Sequence[str]) -> list[Target]:
    """``--vswitchd HOST=RUNDIR`` and ``--ovs HOST[=RUNDIR]`` (no RUNDIR: the system's Open
    vSwitch)."""
    targets: list[Target] = []
    for item in switches:
        host, sep, rundir = item.partition("=")
        if not host or not sep or not rundir:
            raise VerifyError(f"--vswitchd {item!r}: expected HOST=RUNDIR (the run directory "
                              "holding vswitchd.sock)")
        targets.append(Target(host, vswitchd_reader(Path(rundir))))
    for item in ovs:
        host, _, rundir = item.partition("=")
        if not host:
            raise VerifyError(f"--ovs {item!r}: expected HOST or HOST=OVS_RUNDIR")
        targets.append(Target(host, ovs_reader(rundir or None)))
    names = [t.host for t in targets]
    doubled = sorted({h for h in names if names.count(h) > 1})
    if doubled:
        raise VerifyError(f"hypervisor(s) given twice: {', '.join(doubled)}")
    return targets
