"""Which ``LabView`` a run directory holds: a real lab or a simulated one."""

from __future__ import annotations

from pathlib import Path

from tunnelnet.lab.state import LabStateError, StateFile
from tunnelnet.trace.view import LabView


def open_lab(directory: Path, *, dhcp_ports: bool = False) -> LabView:
    """``dhcp_ports``: a real lab's DHCP ports are endpoints too (``dhcp-<network>``)."""
    file = StateFile(directory)
    if file.exists():
        try:
            real = not file.load().sim
        except LabStateError:
            real = False
        if real:
            # the common case, without importing the simulation (half a second of imports)
            from tunnelnet.trace.real import RealLab

            return RealLab(directory, dhcp_ports=dhcp_ports)
    from tunnelnet.lab.state import find_sim

    sim_dir = find_sim(directory)
    if sim_dir is not None:
        from tunnelnet.trace.sim_remote import SimRemoteLab

        return SimRemoteLab(sim_dir)
    file.load()  # a clear "no lab is up" (or "damaged") when there is none
    raise LabStateError(f"{file.path} does not describe a lab")
