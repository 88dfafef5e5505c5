"""``tunnelnet ofctl``: flow tables and port counters of a running vswitchd (the ovs-ofctl
habits: same flow syntax, same dump formats)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tunnelnet.cli.vsctl import Target, call, rundir_option
from tunnelnet.datapath import messages as m


@click.group("ofctl")
@rundir_option
@click.pass_context
def cli(ctx: click.Context, rundir: Path, sim: str | None) -> None:
    """Flow tables, counters and traces of a running `tunnelnet vswitchd` (or, with --sim HV,
    the flows of a simulated lab's hypervisor: tunnelnet ofctl --sim hv1 dump-flows br-tun)."""
    ctx.obj = Target(rundir, sim)


@cli.command("add-flow")
@click.argument("bridge")
@click.argument("flow")
@click.pass_context
def add_flow(ctx: click.Context, bridge: str, flow: str) -> None:
    """Add one FLOW (ovs-ofctl syntax) to BRIDGE."""
    call(ctx, m.AddFlows(bridge, [flow]))


@cli.command("add-flows")
@click.argument("bridge")
@click.argument("file", type=click.File("r"))
@click.pass_context
def add_flows(ctx: click.Context, bridge: str, file: Any) -> None:
    """Add the flows of FILE ('-' for stdin), one per line; all or nothing."""
    lines = [line.rstrip("\n") for line in file]
    call(ctx, m.AddFlows(bridge, lines))


@cli.command("mod-flows")
@click.argument("bridge")
@click.argument("flow")
@click.option("--strict", is_flag=True, help="Match priority and fields exactly.")
@click.pass_context
def mod_flows(ctx: click.Context, bridge: str, flow: str, strict: bool) -> None:
    """Change the actions of the flows of BRIDGE that FLOW matches."""
    call(ctx, m.ModFlows(bridge, flow, strict=strict))


@cli.command("del-flows")
@click.argument("bridge")
@click.argument("match", required=False, default="")
@click.option("--strict", is_flag=True, help="Match priority and fields exactly.")
@click.pass_context
def del_flows(ctx: click.Context, bridge: str, match: str, strict: bool) -> None:
    """Delete the flows of BRIDGE that MATCH selects (all without MATCH)."""
    call(ctx, m.DelFlows(bridge, match, strict=strict))


@cli.command("dump-flows")
@click.argument("bridge")
@click.argument("match", required=False, default="")
@click.option("--no-stats", is_flag=True, help="Leave out counters and durations.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of lines).")
@click.pass_context
def dump_flows(ctx: click.Context, bridge: str, match: str, no_stats: bool,
               as_json: bool) -> None:
    """The flows of BRIDGE, in `ovs-ofctl dump-flows` format."""
    lines = call(ctx, m.DumpFlows(bridge, match, stats=not no_stats))
    if as_json:
        click.echo(json.dumps(lines))
    else:
        for line in lines:
            click.echo(f" {line}")


@cli.command("dump-ports")
@click.argument("bridge")
@click.argument("port", required=False)
@click.option("--names", is_flag=True, help="Show port names instead of numbers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def dump_ports(ctx: click.Context, bridge: str, port: str | None, names: bool,
               as_json: bool) -> None:
    """Per-port counters of BRIDGE, shaped like `ovs-ofctl dump-ports`."""
    ports = call(ctx, m.DumpPorts(bridge, port))
    if as_json:
        click.echo(json.dumps(ports, indent=2))
        return
    click.echo(format_ports(ports, names=names), nl=False)


def format_ports(ports: list[dict[str, Any]], *, names: bool = False) -> str:
    out = [f"OFPST_PORT reply: {len(ports)} ports\n"]
    for p in ports:
        label = p["name"] if names else str(p["ofport"])
        out.append(f"  port {label:>2}: rx pkts={p['rx_packets']}, bytes={p['rx_bytes']}, "
                   f"drop={p['rx_dropped']}, errs={p['rx_errors']}, frame=0, over=0, crc=0\n")
        out.append(f"           tx pkts={p['tx_packets']}, bytes={p['tx_bytes']}, "
                   f"drop={p['tx_dropped']}, errs={p['tx_errors']}, coll=0\n")
        if "mtu" in p:  # a tunnel port: its MTU and what became of frames over it
            over = ", ".join(f"{reason}={count}" for reason, count in
                             sorted(p["oversize"].items())) or "none"
            out.append(f"           mtu={p['mtu']}, oversize: {over}\n")
    return "".join(out)


@cli.command("trace")
@click.argument("bridge")
@click.argument("flow")
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
@click.option("--explain", is_flag=True, help="Say why each table did what it did.")
@click.pass_context
def trace(ctx: click.Context, bridge: str, flow: str, as_json: bool, explain: bool) -> None:
    """Walk FLOW through BRIDGE's tables (like `ovs-appctl ofproto/trace`); changes nothing."""
    result = call(ctx, m.TraceFlow(bridge, flow, explain=explain))
    if as_json:
        click.echo(json.dumps(result["trace"], indent=2))
    else:
        click.echo(result["text"], nl=not result["text"].endswith("\n"))


@cli.command("dp-stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def dp_stats(ctx: click.Context, as_json: bool) -> None:
    """How packets crossed the datapath (like `ovs-appctl dpif/show`): how many followed a
    plan (a known flow's short way past every bridge's tables) and how many walked the tables;
    a flow that keeps walking has a rewrite or an error on its way, or its bridges change."""
    stats = call(ctx, m.DatapathStats())
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    followed, walked = stats["packets_followed"], stats["packets_walked"]
    total = followed + walked
    share = f" ({100 * followed / total:.1f}% followed)" if total else ""
    fastpath = stats.get("fastpath")
    if fastpath:
        click.echo(f"fastpath: {fastpath['mode']} ({fastpath['why']})")
    click.echo(f"plans: {stats['plans']} (made {stats['plans_made']})")
    click.echo(f"packets: followed a plan {followed}, walked the tables {walked}{share}")
    if "kernel_entries" in stats:
        click.echo(f"kernel: entries {stats['kernel_entries']} (installed "
                   f"{stats['kernel_installed']}, removed {stats['kernel_removed']}), "
                   f"packets replayed {stats['kernel_replayed_packets']} (from VM ports "
                   f"{stats['kernel_port_hits']}, from the tunnel "
                   f"{stats['kernel_tunnel_hits']}), upcalls {stats['kernel_upcalls']} "
                   f"(read {stats['kernel_upcalls_read']}, lost "
                   f"{stats['kernel_upcalls_lost']}), too big for the kernel "
                   f"{stats['kernel_too_big']}, VXLAN the kernel's device would drop "
                   f"handed up {stats.get('kernel_underlay_handed_up', 0)} (lost "
                   f"{stats.get('kernel_underlay_lost', 0)})")
        if "kernel_gre_sent" in stats:
            click.echo(f"kernel GRE: sent {stats['kernel_gre_sent']}, received "
                       f"{stats['kernel_gre_received']}, left to Python "
                       f"{stats['kernel_gre_left_to_python']} (not IP, no next-hop MAC "
                       f"{stats['kernel_gre_not_ip_without_mac']})")
        if "kernel_vxlan_sent" in stats:
            # VXLAN written and read by the programs themselves (the rest of the VXLAN
            # replayed went through the collect_md device)
            click.echo(f"kernel-written tunnels: VXLAN sent {stats['kernel_vxlan_sent']}, "
                       f"received {stats['kernel_vxlan_received']}; GRE and VXLAN failed "
                       f"{stats['kernel_encap_failed']}")
        if "kernel_port_meter_rate" in stats:
            click.echo(f"kernel port meter: {stats['kernel_port_meter_rate']:g} frames/s "
                       f"(burst {stats['kernel_port_meter_burst']:g}) per VM port to Python; "
                       f"kept back {stats['kernel_port_meter_dropped']}")
            for port, count in sorted(stats["kernel_port_meter_dropped_by_port"].items()):
                if count:
                    click.echo(f"  kept back from {port}: {count}")
        for reason, count in sorted(stats["kernel_stays_in_python"].items()):
            click.echo(f"  stays in Python: {reason}: {count}")


@cli.command("dump-drops")
@click.argument("bridge", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def dump_drops(ctx: click.Context, bridge: str | None, as_json: bool) -> None:
    """Dropped packets by reason: per bridge, the daemon's own (unknown tunnel peer...), and
    per tunnel port the frames too big for it: mtu_frag_needed / mtu_packet_too_big (dropped,
    the sender told with ICMP), mtu_fragmented (sent as IPv4 fragments), mtu_exceeded."""
    drops = call(ctx, m.DumpDrops(bridge))
    if as_json:
        click.echo(json.dumps(drops, indent=2))
        return
    for name, reasons in drops["bridges"].items():
        click.echo(f"bridge {name}:")
        for reason, count in sorted(reasons.items()):
            click.echo(f"  {reason}: {count}")
    click.echo("tunnel receive:")
    for reason, count in sorted(drops["daemon"].items()):
        click.echo(f"  {reason}: {count}")
    refused = {name: counts for name, counts in drops.get("learning_refused", {}).items()
               if any(counts.values())}
    if refused:
        click.echo("sources not learned (a cap was full; the frames were still forwarded):")
        for name, counts in sorted(refused.items()):
            click.echo(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    oversize = drops.get("oversize", {})
    if oversize:
        click.echo("frames too big for their tunnel, per port:")
        for port, reasons in sorted(oversize.items()):
            click.echo(f"  {port}: " + ", ".join(f"{reason}={count}" for reason, count in
                                                 sorted(reasons.items())))




@cli.command("fdb-show")
@click.argument("bridge")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def fdb_show(ctx: click.Context, bridge: str, as_json: bool) -> None:
    """What BRIDGE has learned against its caps: NORMAL's MACs per VLAN (and the table as
    `ovs-appctl fdb/show` prints it), learn()'s flows per table and VLAN, and how many
    sources each cap refused."""
    fdb = call(ctx, m.FdbShow(bridge))
    if as_json:
        click.echo(json.dumps(fdb, indent=2))
        return
    caps = fdb["other_config"]
    click.echo(f"MACs: {fdb['macs']} (cap per VLAN {caps['mac-table-size']}, aging "
               f"{caps['mac-aging-time']} s), refused {fdb['mac_limit_hits']}")
    for vlan, count in fdb["macs_per_vlan"].items():
        click.echo(f"  VLAN {vlan}: {count}")
    click.echo(f"learned flows (cap per table and VLAN {caps['learn-flow-limit']}), refused "
               f"{fdb['learn_limit_hits']}")
    for row in fdb["learned_flows"]:
        vlan = "-" if row["vlan"] is None else row["vlan"]
        click.echo(f"  table {row['table']} VLAN {vlan}: {row['flows']}")
    for line in fdb["fdb"]:
        click.echo(line)


@cli.command("bfd-show")
@click.argument("interface", required=False, default="")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def bfd_show(ctx: click.Context, interface: str, as_json: bool) -> None:
    """BFD sessions of the tunnel ports (or INTERFACE's), like `ovs-appctl bfd/show`: state,
    forwarding, diagnostics, intervals, and how long ago the state changed and the last
    control packet came."""
    sessions = call(ctx, m.BfdShow(interface))
    if as_json:
        click.echo(json.dumps(sessions, indent=2))
        return
    click.echo(format_bfd_show(sessions), nl=False)


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s ago"


def format_bfd_show(sessions: dict[str, Any]) -> str:
    lines = []
    for name, s in sessions.items():
        lines += [
            f"---- {name} ----",
            f"\tForwarding: {s['forwarding']}",
            f"\tDetect Multiplier: {s['mult']}",
            f"\tLocal Minimum TX Interval: {s['min_tx_ms']}ms",
            f"\tLocal Minimum RX Interval: {s['min_rx_ms']}ms",
            f"\tTX Interval: {s['tx_interval_ms']}ms",
            f"\tDetection Time: {s['detection_time_ms']}ms",
            f"\tState changed: {_ago(s['since_change_s'])}; last control packet: "
            f"{_ago(s['since_rx_s'])}; flaps: {s['flap_count']}",
            "",
            f"\tLocal Session State: {s['state']}",
            f"\tLocal Diagnostic: {s['diagnostic']}",
            f"\tLocal Discriminator: 0x{s['local_discriminator']:x}",
            "",
            f"\tRemote Session State: {s['remote_state']}",
            f"\tRemote Diagnostic: {s['remote_diagnostic']}",
            f"\tRemote Discriminator: 0x{s['remote_discriminator']:x}",
            f"\tRemote Minimum TX Interval: {s['remote_min_tx_ms']}ms",
            f"\tRemote Minimum RX Interval: {s['remote_min_rx_ms']}ms",
            f"\tRemote Detect Multiplier: {s['remote_mult']}",
            "",
        ]
    return "".join(line + "\n" for line in lines)
