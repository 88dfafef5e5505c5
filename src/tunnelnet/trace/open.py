"""Which ``LabView`` a run directory holds: a real lab or a simulated one."""

from __future__ import annotations

from pathlib import Path

from tunnelnet.lab.state import StateFile
from tunnelnet.trace.view import LabView


def open_lab(directory: Path) -> LabView:
    from tunnelnet.lab.sim_server import find_sim

    sim_dir = find_sim(directory)
    if sim_dir is not None:
        from tunnelnet.trace.sim_remote import SimRemoteLab

        return SimRemoteLab(sim_dir)
    from tunnelnet.trace.real import RealLab

    StateFile(directory).load()  # a clear "no lab is up" when there is none
    return RealLab(directory)
