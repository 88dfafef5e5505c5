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


def print_status(data: dict[str, Any], *, simulated: bool) -> None:
    click.echo("hypervisors (simulated):" if simulated else "hypervisors:")
    by_ip = {hv["ip"]: hv["name"] for hv in data["hypervisors"]}
    rows = []
    for hv in data["hypervisors"]:
        remotes = hv.get("tunnel_remotes", {})
        # each tunnel with the underlay address it leads to, and whose address that is
        tunnels = [f"{name} -> {remotes[name]} ({by_ip.get(remotes[name], '?')})"
                   if remotes.get(name) else name for name in hv["tunnels"]]
        rows.append([hv["name"], hv["ip"], "alive" if hv["agent_alive"] else "DEAD",
                     ", ".join(tunnels) or "-"])
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
