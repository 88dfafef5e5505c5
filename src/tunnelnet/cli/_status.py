"""``lab status`` as a table: what ``lab status`` and ``lab sim-demo`` print of a lab's status
document (``lab status --json``), in one place so the two look alike."""

from __future__ import annotations

from typing import Any

import click


def table(header: list[str], rows: list[list[str]]) -> None:
    """Columns as wide as their widest cell, under a header line; the last column runs free."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [f"{cell:<{width}}" for cell, width in zip(row, widths, strict=False)]
        click.echo("  " + "  ".join([*cells, row[-1]]).rstrip())


def _liveness(state: dict[str, Any] | None) -> str:
    """" up", " DOWN for 12 s (Control Detection Time Expired)", or "" without BFD."""
    if not state or state.get("state") in (None, "off"):
        return ""
    if state["state"] == "up":
        return " up"
    since = state.get("since_change_s")
    how_long = f" for {since:.0f} s" if isinstance(since, int | float) else ""
    why = f" ({state['diagnostic']})" if state.get("diagnostic") else ""
    return f" {str(state['state']).upper()}{how_long}{why}"


def print_status(data: dict[str, Any], *, simulated: bool) -> None:
    click.echo("hypervisors (simulated):" if simulated else "hypervisors:")
    by_ip = {hv["ip"]: hv["name"] for hv in data["hypervisors"]}
    rows = []
    for hv in data["hypervisors"]:
        remotes = hv.get("tunnel_remotes", {})
        states = hv.get("tunnel_states", {})
        # each tunnel with the underlay address it leads to, whose address that is, and its
        # BFD state when it runs BFD
        tunnels = [(f"{name} -> {remotes[name]} ({by_ip.get(remotes[name], '?')})"
                    if remotes.get(name) else name) + _liveness(states.get(name))
                   for name in hv["tunnels"]]
        rows.append([hv["name"], hv["ip"], "alive" if hv["agent_alive"] else "DEAD",
                     ", ".join(tunnels) or "-"])
    # a tunnel's BFD state follows it when it runs BFD ("up", "DOWN for 12 s (...)")
    table(["HYPERVISOR", "UNDERLAY IP", "AGENT", "TUNNELS (port -> remote IP)"], rows)
    click.echo("VMs:")
    # TAP is Nova's name for the port's vNIC ("tap" + its id's first 11 characters), so a row
    # maps onto 'port list' and onto 'vsctl show'
    table(["VM", "TENANT", "NETWORK", "HOST", "IP", "MAC", "MTU", "TAP", "PORT"],
          [[vm["name"], vm["tenant"], vm["network"], vm["hypervisor"], vm["ip"], vm["mac"],
            str(vm["mtu"]), vm.get("tap", "-"), vm["port_status"]] for vm in data["vms"]])
    control = data.get("control")
    if control:
        print_control(control)


def print_control(control: dict[str, Any]) -> None:
    click.echo(f"control plane (store {control.get('store', 'sqlite')}):")
    table(["CONTROLLER", "PROCESS", "API", "URL"],
          [[c["name"], "running" if c["running"] else "STOPPED",
            "answers" if c["answers"] else "SILENT", c["url"]]
           for c in control.get("controllers", [])])
    if control.get("etcd"):
        table(["ETCD MEMBER", "PROCESS", "HEALTH", "ROLE", "ENDPOINT"],
              [[m["name"], "running" if m.get("running") else "STOPPED",
                "healthy" if m["healthy"] else "UNHEALTHY",
                "leader" if m["leader"] else "-",
                m["endpoint"] + (f"  ({m['error']})" if m.get("error") else "")]
               for m in control["etcd"]])
