"""The reachability matrix as `lab verify` prints it, for real and simulated labs alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import click


class PairVerdict(Protocol):
    @property
    def src(self) -> str: ...
    @property
    def dst(self) -> str: ...
    @property
    def expected(self) -> bool: ...
    @property
    def reached(self) -> bool: ...
    @property
    def surprise(self) -> bool: ...
    @property
    def detail(self) -> str: ...


def print_matrix(names: Sequence[str], verdicts: Sequence[PairVerdict], *,
                 how: str = "") -> None:
    """Rows ping columns: Y reached, . not, ! a surprise; then each surprise in words."""
    width = max(len(n) for n in names) + 1
    click.echo(f"reachability{how} (row pings column; Y reached, . not; ! = surprise)")
    click.echo(" " * width + " ".join(f"{n:>{width}}" for n in names))
    index = {(v.src, v.dst): v for v in verdicts}
    for a in names:
        row = []
        for b in names:
            if a == b:
                row.append(f"{'-':>{width}}")
                continue
            cell = index[(a, b)]
            mark = ("Y" if cell.reached else ".") + ("!" if cell.surprise else "")
            row.append(f"{mark:>{width}}")
        click.echo(f"{a:<{width}}" + " ".join(row))
    surprises = [v for v in verdicts if v.surprise]
    for v in surprises:
        expected = "reachable" if v.expected else "isolated"
        click.echo(f"SURPRISE: {v.src} -> {v.dst} should be {expected}: {v.detail}")
    click.echo(f"{len(verdicts)} pairs, {len(surprises)} surprises")
