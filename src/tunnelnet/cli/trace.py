"""``tunnelnet trace VM1 VM2``: one packet's whole journey across a lab, from its switches."""

from __future__ import annotations

import json

import click

from tunnelnet.lab.state import lab_dir
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.probe import PROTOCOLS


@click.command("trace")
@click.argument("src")
@click.argument("dst")
@click.option("--proto", type=click.Choice(PROTOCOLS), default="icmp", show_default=True,
              help="What VM1 sends: ICMP echo, TCP SYN, UDP datagram or ARP request.")
@click.option("--dport", type=int, default=None, help="TCP/UDP destination port (5201).")
@click.option("--size", type=int, default=None,
              help="Payload bytes (ICMP 56 like ping); a big one shows where the MTU stops it.")
@click.option("--json", "as_json", is_flag=True, help="Print the journey as JSON.")
@click.option("--explain", is_flag=True, help="Plain words for every bridge and table.")
@click.option("--live", is_flag=True,
              help="Then send that very packet from VM1 and check counters, the underlay "
                   "capture and arrival at VM2 against the trace (real lab, root).")
@click.option("--evidence", type=click.Path(file_okay=False), default=None,
              help="With --live: keep the captures (pcap) in this directory.")
@click.option("--dir", "directory", envvar="TUNNELNET_LAB_DIR", default=None,
              help="Run directory of the lab (env TUNNELNET_LAB_DIR).")
def cli(src: str, dst: str, proto: str, dport: int | None, size: int | None, as_json: bool,
        explain: bool, live: bool, evidence: str | None, directory: str | None) -> int:
    """Trace a packet from VM SRC to VM DST through every table of every switch on its way:
    br-int, br-tun, the tunnel (VXLAN/GRE) and the far side, read from the running lab."""
    from tunnelnet.trace.journey import trace
    from tunnelnet.trace.open import open_lab
    from tunnelnet.trace.real import RealLab
    from tunnelnet.trace.render import to_text

    lab = open_lab(lab_dir(directory))
    journey = trace(lab, src, dst, proto, dport, size=size)
    if live:
        from pathlib import Path

        from tunnelnet.trace.live import check

        if not isinstance(lab, RealLab):
            raise TraceError("--live sends a real packet: it needs a lab on real namespaces "
                             "('sudo tunnelnet lab up FILE'), not a simulated one; without "
                             "--live this trace reads the simulated switches' tables, and "
                             "'tunnelnet ofctl --sim HV dump-flows br-tun' shows them")
        journey.live = check(lab, journey, evidence_dir=Path(evidence) if evidence else None)
    if as_json:
        click.echo(json.dumps(journey.to_json(), indent=2))
    else:
        click.echo(to_text(journey, explain=explain), nl=False)
    return 1 if live and journey.live is not None and not journey.live.get("ok") else 0
