"""``tunnelnet vsctl``: bridges and ports of a running vswitchd (the ovs-vsctl habits)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from tunnelnet.datapath import messages as m
from tunnelnet.datapath.control import ControlClient
from tunnelnet.datapath.errors import DatapathError, NotRunningError
from tunnelnet.lab.state import StateFile

DEFAULT_RUNDIR = "/run/tunnelnet"
_PORT_SETTINGS = ("type", "tag", "ofport")


@dataclass(frozen=True, slots=True)
class Target:
    """Whom the group's commands ask: the vswitchd of ``rundir``, or with ``sim`` that
    hypervisor's switch in the simulated lab that is up (``lab up --sim``)."""

    rundir: Path
    sim: str | None = None


def _sim_lab() -> Path | None:
    from tunnelnet.lab.state import find_sim, lab_dir

    return find_sim(lab_dir())


def call(ctx: click.Context, request: m.Request) -> Any:
    """One request to the switch of the group's target (kept in ctx.obj)."""
    target: Target = ctx.obj
    if target.sim is not None:
        directory = _sim_lab()
        if directory is None:
            raise DatapathError("--sim: no simulated lab is up (TUNNELNET_LAB_DIR); start one "
                                "with 'tunnelnet lab up --sim FILE'")
        from tunnelnet.lab.sim_vswitch import OP
        from tunnelnet.lab.sim_wire import SimClient

        return SimClient(directory, timeout=60.0).call(
            OP, hypervisor=target.sim, request=m.encode_request(request, 1).decode())
    try:
        with ControlClient(target.rundir) as client:
            return client.call(request)
    except NotRunningError as exc:
        directory = _sim_lab()
        if directory is None:
            raise
        # no vswitchd here, but a simulated lab is up: its switches answer with --sim
        hosts = sorted(StateFile(directory).load().hypervisors)
        group = ctx.find_root().info_name or "tunnelnet"
        command = ctx.parent.info_name if ctx.parent is not None else "vsctl"
        raise NotRunningError(
            f"{exc}; a simulated lab is up ({directory}): ask one of its hypervisors' switches "
            f"with --sim, e.g. '{group} {command} --sim {hosts[0] if hosts else 'hv1'} "
            f"{ctx.info_name} ...' (hypervisors: {', '.join(hosts)})") from None


def rundir_option(func: Any) -> Any:
    func = click.option(
        "--sim", "sim", default=None, metavar="HYPERVISOR",
        help="Ask HYPERVISOR's switch in the simulated lab that is up (lab up --sim; "
             "env TUNNELNET_LAB_DIR) instead of a vswitchd; read-only.")(func)
    return click.option(
        "--rundir", envvar="TUNNELNET_RUNDIR", default=DEFAULT_RUNDIR, show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Run directory of the vswitchd (env TUNNELNET_RUNDIR).")(func)


@click.group("vsctl")
@rundir_option
@click.pass_context
def cli(ctx: click.Context, rundir: Path, sim: str | None) -> None:
    """Configure bridges and ports of a running `tunnelnet vswitchd` (or, with --sim HV,
    read those of a simulated lab's hypervisor: tunnelnet vsctl --sim hv1 show)."""
    ctx.obj = Target(rundir, sim)


@cli.command("add-br")
@click.argument("bridge")
@click.argument("settings", nargs=-1)
@click.option("--may-exist", is_flag=True, help="No error if the bridge exists.")
@click.pass_context
def add_br(ctx: click.Context, bridge: str, settings: tuple[str, ...], may_exist: bool) -> None:
    """Add BRIDGE; `fail_mode=secure` gives it no default NORMAL flow (misses drop)."""
    fail_mode = "standalone"
    for item in settings:
        name, sep, value = item.partition("=")
        if name != "fail_mode" or not sep:
            raise DatapathError(f"add-br: unknown setting {item!r} (known: fail_mode=secure)")
        fail_mode = value
    call(ctx, m.AddBridge(bridge, fail_mode=fail_mode, may_exist=may_exist))


@cli.command("del-br")
@click.argument("bridge")
@click.option("--if-exists", is_flag=True, help="No error if the bridge does not exist.")
@click.pass_context
def del_br(ctx: click.Context, bridge: str, if_exists: bool) -> None:
    """Delete BRIDGE and all its ports."""
    call(ctx, m.DelBridge(bridge, if_exists=if_exists))


def parse_port_settings(port: str, settings: tuple[str, ...]) -> m.AddPort:
    """`type=vxlan tag=5 ofport=3 options:remote_ip=192.0.2.2 external_ids:iface-id=X
    bfd:enable=true`."""
    values: dict[str, str] = {}
    options: dict[str, str] = {}
    external_ids: dict[str, str] = {}
    bfd: dict[str, str] = {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise DatapathError(f"add-port: {item!r} is not NAME=VALUE")
        column, colon, key = name.partition(":")
        if colon:
            target = {"options": options, "external_ids": external_ids,
                      "bfd": bfd}.get(column)
            if target is None or not key:
                raise DatapathError(f"add-port: {item!r}: only options:K=V, "
                                    "external_ids:K=V and bfd:K=V have keys")
            target[key] = value
        elif name in _PORT_SETTINGS:
            values[name] = value
        else:
            raise DatapathError(f"add-port: unknown setting {name!r} (known: type, tag, ofport, "
                                "options:K=V, external_ids:K=V, bfd:K=V)")
    numbers: dict[str, int | None] = {"tag": None, "ofport": None}
    for name in numbers:
        if name in values:
            try:
                numbers[name] = int(values[name], 0)
            except ValueError:
                raise DatapathError(f"add-port: {name}={values[name]!r} is not a number"
                                    ) from None
    return m.AddPort("", port, type=values.get("type", "system"), tag=numbers["tag"],
                     ofport=numbers["ofport"], options=options, external_ids=external_ids,
                     bfd=bfd)


@cli.command("add-port")
@click.argument("bridge")
@click.argument("port")
@click.argument("settings", nargs=-1)
@click.option("--may-exist", is_flag=True, help="No error if the port is already there.")
@click.pass_context
def add_port(ctx: click.Context, bridge: str, port: str, settings: tuple[str, ...],
             may_exist: bool) -> None:
    """Add PORT to BRIDGE: [type=system|internal|patch|vxlan|gre|geneve] [tag=N] [ofport=N]
    [options:K=V ...] [external_ids:K=V ...] [bfd:K=V ...] (BFD on a tunnel port)."""
    request = parse_port_settings(port, settings)
    request = m.AddPort(bridge, port, request.type, request.tag, request.ofport,
                        request.options, request.external_ids, may_exist, request.bfd)
    call(ctx, request)


@cli.command("del-port")
@click.argument("names", nargs=-1, required=True)
@click.option("--if-exists", is_flag=True, help="No error if the port does not exist.")
@click.pass_context
def del_port(ctx: click.Context, names: tuple[str, ...], if_exists: bool) -> None:
    """Delete a port: `del-port [BRIDGE] PORT`."""
    if len(names) > 2:
        raise DatapathError("del-port: give [BRIDGE] PORT")
    bridge, port = (names[0], names[1]) if len(names) == 2 else ("", names[0])
    call(ctx, m.DelPort(bridge, port, if_exists=if_exists))


@cli.command("set-port")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def set_port(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Change a port: `set-port [BRIDGE] PORT tag=N|tag=[] [external_ids:K=V ...]`.

    `tag=[]` removes the tag (trunk port); external_ids given replace the port's set."""
    settings = [n for n in names if "=" in n]
    positional = [n for n in names if "=" not in n]
    if not 1 <= len(positional) <= 2:
        raise DatapathError("set-port: give [BRIDGE] PORT then settings")
    bridge, port = (positional[0], positional[1]) if len(positional) == 2 else ("",
                                                                                positional[0])
    tag: int | None = None
    clear_tag = False
    external_ids: dict[str, str] | None = None
    for item in settings:
        name, _, value = item.partition("=")
        if name == "tag" and value in ("[]", ""):
            clear_tag = True
        elif name == "tag":
            try:
                tag = int(value, 0)
            except ValueError:
                raise DatapathError(f"set-port: tag={value!r} is not a number") from None
        elif name.startswith("external_ids:") and name[len("external_ids:"):]:
            external_ids = external_ids or {}
            external_ids[name[len("external_ids:"):]] = value
        else:
            raise DatapathError(f"set-port: unknown setting {item!r} (known: tag=N, tag=[], "
                                "external_ids:K=V)")
    call(ctx, m.SetPort(bridge, port, tag=tag, clear_tag=clear_tag, external_ids=external_ids))


_TABLES = ("interface", "Interface")


def _interface_table(table: str, command: str) -> None:
    if table not in _TABLES:
        raise DatapathError(f"{command}: only the Interface table is kept here, not {table!r}")


def _set_bridge(ctx: click.Context, bridge: str, settings: tuple[str, ...]) -> None:
    other_config: dict[str, str] = {}
    for item in settings:
        column, colon, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if column != "other_config" or not colon or not eq or not key:
            raise DatapathError(f"set: {item!r}: a bridge takes other_config:KEY=VALUE (bfd "
                                "keys are set on an interface)")
        other_config[key] = value
    call(ctx, m.SetBridge(bridge, other_config))


@cli.command("set")
@click.argument("table")
@click.argument("interface")
@click.argument("settings", nargs=-1, required=True)
@click.pass_context
def set_(ctx: click.Context, table: str, interface: str, settings: tuple[str, ...]) -> None:
    """Set keys of an interface's bfd column: `set interface PORT bfd:enable=true
    bfd:min_tx=100 bfd:min_rx=100 [bfd:mult=3 ...]` (the keys of ovs-vsctl's Interface bfd
    column). `bfd:enable=false` stops BFD; `clear interface PORT bfd` forgets every key.
    Or a bridge's learning caps: `set bridge BR other_config:mac-table-size=N` (MACs NORMAL
    learns per VLAN), `other_config:mac-aging-time=SECONDS`, `other_config:learn-flow-limit=N`
    (flows learn() installs per table and VLAN)."""
    if table in ("bridge", "Bridge"):
        _set_bridge(ctx, interface, settings)
        return
    if table not in _TABLES:
        raise DatapathError(f"set: the Interface (bfd) and Bridge (other_config) tables are "
                            f"kept here, not {table!r}")
    changes: dict[str, str] = {}
    for item in settings:
        name, sep, value = item.partition("=")
        column, colon, key = name.partition(":")
        if not sep or column != "bfd" or not colon or not key:
            raise DatapathError(f"set: {item!r}: give bfd:KEY=VALUE (tags and external_ids: "
                                "set-port)")
        changes[key] = value
    call(ctx, m.SetInterface(interface, bfd=changes))


@cli.command("clear")
@click.argument("table")
@click.argument("interface")
@click.argument("column")
@click.pass_context
def clear(ctx: click.Context, table: str, interface: str, column: str) -> None:
    """Empty a column: `clear interface PORT bfd` (BFD stops)."""
    _interface_table(table, "clear")
    if column != "bfd":
        raise DatapathError(f"clear: only the bfd column can be cleared, not {column!r}")
    call(ctx, m.SetInterface(interface, bfd={}, replace=True))


@cli.command("list")
@click.argument("table")
@click.argument("interface", required=False, default="")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_(ctx: click.Context, table: str, interface: str, as_json: bool) -> None:
    """Records of the Interface table (all, or INTERFACE's), as `ovs-vsctl list interface`:
    name, type, ofport, options, bfd, bfd_status, statistics."""
    _interface_table(table, "list")
    records = call(ctx, m.ListInterfaces(interface))
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    click.echo(format_records(records), nl=False)


def _column(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_quote(str(v))}" for k, v in sorted(value.items())) + "}"
    if value is None:
        return "[]"
    return _quote(value) if isinstance(value, str) else json.dumps(value)


def format_records(records: list[dict[str, Any]]) -> str:
    """`ovs-vsctl list`'s layout: one `column : value` line each, a blank line between."""
    blocks = []
    for record in records:
        width = max(len(k) for k in record)
        blocks.append("".join(f"{k:<{width}} : {_column(v)}\n"
                              for k, v in sorted(record.items())))
    return "\n".join(blocks)


@cli.command("list-br")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_br(ctx: click.Context, as_json: bool) -> None:
    """Names of all bridges."""
    names = call(ctx, m.ListBridges())
    click.echo(json.dumps(names) if as_json else "\n".join(names), nl=as_json or bool(names))


@cli.command("list-ports")
@click.argument("bridge")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_ports(ctx: click.Context, bridge: str, as_json: bool) -> None:
    """Names of the ports of BRIDGE."""
    ports = call(ctx, m.ListPorts(bridge))
    if as_json:
        click.echo(json.dumps(ports, indent=2))
        return
    names = [p["name"] for p in ports]
    click.echo("\n".join(names), nl=bool(names))


@cli.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with counters).")
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """The whole configuration, shaped like `ovs-vsctl show`."""
    bridges = call(ctx, m.Show())
    if as_json:
        click.echo(json.dumps(bridges, indent=2))
        return
    click.echo(format_show(bridges), nl=False)
    if ctx.obj.sim is None:  # a real vswitchd: which datapath carries known flows, and why
        fastpath = call(ctx, m.DatapathStats()).get("fastpath")
        if fastpath:
            click.echo(f"    fastpath: {fastpath['mode']} ({fastpath['why']})")


def _quote(value: str) -> str:
    plain = value.replace("-", "").replace("_", "").isalnum()
    return value if plain and not value[:1].isdigit() else json.dumps(value)


def format_show(bridges: list[dict[str, Any]]) -> str:
    lines = []
    for bridge in bridges:
        lines.append(f"    Bridge {bridge['name']}")
        if bridge["fail_mode"] != "standalone":
            lines.append(f"        fail_mode: {bridge['fail_mode']}")
        for port in sorted(bridge["ports"], key=lambda p: p["name"]):
            lines.append(f"        Port {port['name']}")
            if port.get("tag") is not None:
                lines.append(f"            tag: {port['tag']}")
            lines.append(f"            Interface {port['name']}")
            if port["type"] != "system":
                lines.append(f"                type: {port['type']}")
            if port.get("options"):
                opts = ", ".join(f"{k}={_quote(v)}" for k, v in sorted(port["options"].items()))
                lines.append(f"                options: {{{opts}}}")
            if port.get("bfd_status"):  # as ovs-vsctl show prints a BFD interface
                status = ", ".join(f"{k}={_quote(v)}"
                                   for k, v in sorted(port["bfd_status"].items()))
                lines.append(f"                bfd_status: {{{status}}}")
    return "".join(line + "\n" for line in lines)
