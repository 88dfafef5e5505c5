"""``tunnelnet vswitchd``: the per-hypervisor datapath daemon (bridges, ports, tunnels)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tunnelnet.datapath.daemon import PIDFILE_NAME, DaemonConfig, detach, run, setup_logging

DEFAULT_RUNDIR = "/run/tunnelnet"


@click.command("vswitchd")
@click.option("--rundir", envvar="TUNNELNET_RUNDIR", default=DEFAULT_RUNDIR, show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Run directory holding the control socket (env TUNNELNET_RUNDIR).")
@click.option("--pidfile", is_flag=False, flag_value="", default=None,
              help=f"Write the pid to this file (given without a value: RUNDIR/{PIDFILE_NAME}).")
@click.option("--detach", "background", is_flag=True,
              help="Run in the background; return once it answers.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Log here instead of stderr.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@click.option("--persist", is_flag=True,
              help="Keep bridges and ports in RUNDIR/conf.json and restore them at start, "
                   "as Open vSwitch keeps them in its database; keep internal ports over a "
                   "crash; keep flows in RUNDIR/flows.json and restore those still true of "
                   "the restored ports before listening.")
@click.option("--fastpath", envvar="TUNNELNET_FASTPATH", default="auto", show_default=True,
              type=click.Choice(["kernel", "off", "auto"], case_sensitive=False),
              help="Replay known flows in the kernel with eBPF (kernel: refuse to start "
                   "without it), never (off), or where the kernel allows it (auto; else "
                   "Python forwards everything and the log says why, once) "
                   "(env TUNNELNET_FASTPATH).")
@click.option("--port-meter-rate", envvar="TUNNELNET_PORT_METER_RATE", type=float,
              default=None,
              help="With the kernel fast path: the frames without a kernel entry each VM port "
                   "may hand the Python path a second, in the port's socket filter; over it "
                   "they are dropped and counted per port (ofctl dp-stats). 0: no limit. "
                   "Default: 10 times the walk meter's rate "
                   "(env TUNNELNET_PORT_METER_RATE).")
def cli(rundir: Path, pidfile: str | None, background: bool, log_file: Path | None,
        log_level: str, persist: bool, fastpath: str, port_meter_rate: float | None) -> None:
    """Run the switch: bridges with flow tables, system/internal/patch/vxlan/gre ports.

    Manage it with `tunnelnet vsctl` and `tunnelnet ofctl` on the same run directory.
    """
    rundir = rundir.absolute()
    pid_path = None if pidfile is None else (Path(pidfile).absolute() if pidfile
                                             else rundir / PIDFILE_NAME)
    if background:
        argv = [sys.executable, "-m", "tunnelnet", "vswitchd", "--rundir", str(rundir),
                "--log-level", log_level, "--fastpath", fastpath,
                *(["--persist"] if persist else []),
                *(["--port-meter-rate", str(port_meter_rate)] if port_meter_rate is not None
                  else [])]
        if pid_path is not None:
            argv += ["--pidfile", str(pid_path)]
        argv += ["--log-file", str((log_file or rundir / "vswitchd.log").absolute())]
        pid = detach(argv, rundir)
        click.echo(f"vswitchd running as pid {pid}")
        return
    setup_logging(log_file, log_level)
    run(DaemonConfig(rundir=rundir, pidfile=pid_path, log_file=log_file, log_level=log_level,
                     persist=persist, fastpath=fastpath.lower(),
                     port_meter_rate=port_meter_rate))
