"""The command line's own behaviour: help, version, and errors as one line."""

from __future__ import annotations

import subprocess
import sys

from tunnelnet import __version__
from tunnelnet.cli.main import main


def test_main_returns_zero_for_help() -> None:
    assert main(["--help"]) == 0


def test_unknown_command_exits_non_zero_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tunnelnet", "no-such-command"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "no-such-command" in proc.stderr


def test_version_matches_package() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tunnelnet", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in proc.stdout
