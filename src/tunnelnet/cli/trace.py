"""``tunnelnet trace VM1 VM2``: one packet's whole journey across a lab, from its switches."""

from __future__ import annotations

import json
from typing import Any, Final

import click

from tunnelnet.errors import TunnelnetError
from tunnelnet.lab.state import lab_dir
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.probe import PROTOCOLS

DELIVERED: Final = 0
NOT_DELIVERED: Final = 1
ERROR: Final = 2  # as click's usage errors: the question could not be answered


class TraceCommand(click.Command):
    """An error of ours (no lab, an unknown VM, a switch that does not answer) exits 2, so
    that 1 keeps meaning "not delivered"."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TunnelnetError as exc:
            click.echo(f"tunnelnet: error: {exc}", err=True)
            raise click.exceptions.Exit(ERROR) from None


@click.command("trace", cls=TraceCommand)
@click.argument("src")
@click.argument("dst")
@click.option("--proto", type=click.Choice(PROTOCOLS), default="icmp", show_default=True,
              help="What VM1 sends: ICMP echo, TCP SYN, UDP datagram or ARP request.")
@click.option("--dport", type=int, default=None, help="TCP/UDP destination port (5201).")
@click.option("--size", type=int, default=None,
              help="Payload bytes (ICMP 56 like ping); a big one shows where the MTU stops it.")
@click.option("--src-mac", default=None,
              help="Forge the frame's source MAC (port security drops it: the trace names "
                   "the table and flow).")
@click.option("--src-ip", default=None,
              help="Forge the source IPv4 address (for --proto arp: the address the ARP "
                   "claims, as a gratuitous ARP would).")
@click.option("--json", "as_json", is_flag=True, help="Print the journey as JSON.")
@click.option("--explain", is_flag=True, help="Plain words for every bridge and table.")
@click.option("--live", is_flag=True,
              help="Then send that very packet from VM1 and check counters, the underlay "
                   "capture and arrival at VM2 against the trace (real lab, root); the "
                   "trace is then of that packet alone, without the ARP exchange before it.")
@click.option("--evidence", type=click.Path(file_okay=False), default=None,
              help="With --live: keep the captures (pcap) in this directory.")
@click.option("--dir", "directory", envvar="TUNNELNET_LAB_DIR", default=None,
              help="Run directory of the lab (env TUNNELNET_LAB_DIR).")
def cli(src: str, dst: str, proto: str, dport: int | None, size: int | None,
        src_mac: str | None, src_ip: str | None, as_json: bool,
        explain: bool, live: bool, evidence: str | None, directory: str | None) -> int:
    """Trace a packet from VM SRC to VM DST through every table of every switch on its way:
    br-int, br-tun, the tunnel or the physical network (VLAN/flat) and the far side, read
    from the running lab (real or simulated; 'lab sim-trace' is the same command).

    Unless the packet is ARP itself, the ARP request and reply that precede it are walked
    first and every switch learns from them as a real one would; an ICMP echo's reply is
    walked after it. Where a switch's own lookup floods a frame to a MAC it has not learned,
    the trace says that this is a first-packet effect and follows the frame where it goes
    once the switch has learned. In a real lab a network's DHCP port can be SRC or DST as
    dhcp-NETWORK: '--proto udp --dport 67' follows a lease renewal to its dnsmasq.

    \b
    Exit status:
      0  the packet is delivered to DST (with --live: and the wire agrees)
      1  it is not delivered (with --live: or the wire disagrees with the trace)
      2  error: no lab, an unknown VM, a bad option, a switch that does not answer"""
    from tunnelnet.trace.journey import trace
    from tunnelnet.trace.open import open_lab
    from tunnelnet.trace.real import RealLab
    from tunnelnet.trace.render import to_text

    # a DHCP port is a port of its network like a VM's: `trace r1 dhcp-red-net --proto udp
    # --dport 67` follows a lease renewal to dnsmasq
    lab = open_lab(lab_dir(directory), dhcp_ports=True)
    # --live sends this one frame as it is: the prediction is for exactly that, on the
    # switches as they are (no ARP exchange walked before it)
    journey = trace(lab, src, dst, proto, dport, size=size, exchange=not live,
                    src_mac=src_mac, src_ip=src_ip)
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
    if live and journey.live is not None and not journey.live.get("ok"):
        return NOT_DELIVERED
    return DELIVERED if journey.outcome.delivered else NOT_DELIVERED
