"""``tunnelnet fastpath``: whether the kernel fast path (eBPF replay, issue #22) can run here.

vswitchd does not use the kernel fast path yet; this answers the question an operator asks
first: would the kernel load our programs on this host, and if not, why not.
"""

from __future__ import annotations

import json
import sys

import click

from tunnelnet.datapath.kernel_fastpath import REPLAY_OBJECT, load_or_explain


@click.group()
def cli() -> None:
    """The kernel fast path: BPF programs that replay the switch's plans (not yet used by
    vswitchd)."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of text")
def check(as_json: bool) -> None:
    """Load the replay programs once and free them: exit 0 if the kernel takes them, 1 with
    the reason (no libbpf1, object not built by `make bpf`, no CAP_BPF) if not."""
    fastpath, verdict = load_or_explain()
    if fastpath is not None:
        fastpath.close()
    available = fastpath is not None
    reason = "" if available else verdict.removeprefix("off: ")
    if as_json:
        click.echo(json.dumps({"available": available, "object": str(REPLAY_OBJECT),
                               "reason": reason}))
    elif available:
        click.echo(f"kernel fast path: available ({REPLAY_OBJECT.name} loads)")
    else:
        click.echo(f"kernel fast path: off: {reason}")
    if not available:
        sys.exit(1)
