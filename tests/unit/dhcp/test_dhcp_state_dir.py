"""dnsmasq drops root for user nobody and re-reads its files as nobody: the agent refuses a
state directory nobody cannot reach (a 0700 parent, as pytest's and many home directories
are), instead of a dnsmasq that silently answers no one."""

from __future__ import annotations

from pathlib import Path

from tunnelnet.dhcp.dnsmasq import unreachable_by_others


def test_a_closed_parent_is_named(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    (closed / "dhcp").mkdir(parents=True)
    closed.chmod(0o700)
    tmp_path.chmod(0o755)
    assert unreachable_by_others(closed / "dhcp") == closed


def test_an_open_path_passes(tmp_path: Path) -> None:
    open_dir = tmp_path / "open" / "dhcp"
    open_dir.mkdir(parents=True)
    for part in (tmp_path, tmp_path / "open", open_dir):
        part.chmod(0o755)
    blocked = unreachable_by_others(open_dir)
    # pytest's own base directory may be closed; nothing at or below tmp_path is
    assert blocked is None or blocked not in (tmp_path, tmp_path / "open", open_dir)
