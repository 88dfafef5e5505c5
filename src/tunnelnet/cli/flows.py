"""``tunnelnet flows``: read a flow file offline - dump it normalised, or trace a packet.

No switch process is needed: the file is loaded into an in-memory bridge (fail-secure, so
only the file's flows exist), the way one reads a flow table on paper.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from tunnelnet.switch import PIPELINES, Bridge, Pipeline, SwitchError
from tunnelnet.switch.actions import OutputPort, Resubmit


def _load(path: Path, ports: tuple[str, ...], pipeline: str | None) -> Bridge:
    if pipeline is None and path.stem in PIPELINES:
        pipeline = path.stem  # br-tun.flows reads as Neutron's br-tun
    bridge = Bridge(path.stem or "br0", fail_mode="secure", pipeline=_pipeline(pipeline))
    for spec in ports:
        _add_port(bridge, spec)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SwitchError(f"--flows {str(path)!r}: {exc.strerror}") from None
    bridge.add_flows(lines)
    _add_referenced_ports(bridge)
    return bridge


def _add_port(bridge: Bridge, spec: str) -> None:
    """NAME=OFPORT[:tag=VLAN][:trunks=V1/V2][:no-flood], e.g. vm1=5:tag=1 for NORMAL."""
    head, *options = spec.split(":")
    name, eq, number = head.partition("=")
    if not eq or not name or not number.isdigit():
        raise SwitchError(f"--port {spec!r}: expected NAME=OFPORT, e.g. patch-int=1")
    tag: int | None = None
    trunks: list[int] = []
    no_flood = False
    for option in options:
        key, _, value = option.partition("=")
        try:
            if key == "tag":
                tag = int(value)
            elif key == "trunks":
                trunks = [int(v) for v in value.split("/")]
            elif key == "no-flood" and not value:
                no_flood = True
            else:
                raise SwitchError(f"--port {spec!r}: unknown option {option!r}")
        except ValueError:
            raise SwitchError(f"--port {spec!r}: {option!r} needs a number") from None
    bridge.add_port(name, int(number), tag=tag, trunks=trunks, no_flood=no_flood)


def _pipeline(name: str | None) -> Pipeline | None:
    if name is None:
        return None
    if name not in PIPELINES:
        raise SwitchError(f"--pipeline {name!r}: known are {', '.join(sorted(PIPELINES))}")
    return PIPELINES[name]


def _add_referenced_ports(bridge: Bridge, extra: tuple[int, ...] = ()) -> None:
    """Ports that flows mention by number exist, so outputs to them are not 'nonexistent'."""
    wanted: set[int] = set(extra)
    for entry in bridge.flows():
        port = entry.match.value("in_port")
        if port is not None:
            wanted.add(port)
        for action in entry.actions:
            if isinstance(action, OutputPort):
                wanted.add(action.port)
            elif isinstance(action, Resubmit) and action.in_port is not None:
                wanted.add(action.in_port)
    for number in sorted(wanted):
        if number < 0xFF00 and number not in bridge.port_numbers and number > 0:
            bridge.add_port(f"port{number}", number)


@click.group("flows")
def cli() -> None:
    """Read flow files offline: normalised dumps and packet traces."""


_flows_option = click.option(
    "--flows",
    "flows_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Flow file: ovs-ofctl add-flows syntax, one flow a line, '#' comments.",
)
_port_option = click.option(
    "--port",
    "ports",
    multiple=True,
    metavar="NAME=OFPORT[:tag=V][:trunks=V1/V2][:no-flood]",
    help="Name a port (repeatable), with NORMAL's VLAN settings; ports used by number in "
    "the flows exist anyway.",
)
_pipeline_option = click.option(
    "--pipeline",
    default=None,
    help=f"Declared pipeline for table names in explanations ({', '.join(sorted(PIPELINES))}); "
    "default: the flow file's name if it is one of these (br-tun.flows).",
)


@cli.command("dump")
@_flows_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def dump(flows_file: Path, as_json: bool, fmt: str) -> None:
    """Print the flows normalised, as `ovs-ofctl --no-stats dump-flows` prints them."""
    bridge = _load(flows_file, (), None)
    if as_json or fmt == "json":
        data = [
            {
                "table": e.table,
                "priority": e.priority,
                "cookie": f"{e.cookie:#x}",
                "match": e.match.format(),
                "actions": e.actions_text,
                "idle_timeout": e.idle_timeout,
                "hard_timeout": e.hard_timeout,
                "text": line,
            }
            for e, line in zip(bridge.flows(), bridge.dump_flows(stats=False), strict=True)
        ]
        click.echo(json.dumps(data, indent=2))
        return
    for line in bridge.dump_flows(stats=False):
        click.echo(line)


@cli.command("trace")
@_flows_option
@_port_option
@_pipeline_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--explain", is_flag=True, help="Add a plain-words line for each step.")
@click.argument("flow")
def trace(
    flows_file: Path,
    ports: tuple[str, ...],
    pipeline: str | None,
    as_json: bool,
    fmt: str,
    explain: bool,
    flow: str,
) -> None:
    """Trace FLOW (ofproto/trace syntax, e.g. in_port=1,dl_src=..,dl_dst=..,dl_vlan=5)."""
    bridge = _load(flows_file, ports, pipeline)
    in_port = bridge.trace_key(flow).get("in_port", 0)
    _add_referenced_ports(bridge, (in_port,))
    result = bridge.trace(flow)
    if as_json or fmt == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(result.to_text(explain=explain), nl=False)
