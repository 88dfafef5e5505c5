"""The real `openstack` command (python-openstackclient from PyPI) against a tunnelnet server.

Each `openstack` process spends 1-2 s importing its plugins, so `batch` feeds many commands
to one process through its interactive mode (stdin; the same command classes as from argv),
with `shell echo` markers between them to split the output per command: each part is the
command's `-f json` document, or the error it printed. `run` is one plain invocation, for
what must be shown from argv (auth options, exit status). Credentials come the way a Neutron
user standalone gives them: the `admin_token` plugin with an explicit endpoint, or a
clouds.yaml.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.tools import require_tool

_MARK = "@@tunnelnet-osc-command-end@@"


def openstack_path() -> str:
    beside = Path(sys.executable).parent / "openstack"  # the venv's, with its dev extras
    return str(beside) if beside.exists() else require_tool("openstack")


@dataclass(frozen=True, slots=True)
class Output:
    """One command's output: its JSON document, or (when it failed) its message."""

    text: str

    @property
    def data(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            raise AssertionError(f"not JSON (the command failed?): {self.text!r}") from None

    @property
    def failed(self) -> bool:
        try:
            json.loads(self.text)
        except ValueError:
            return bool(self.text)
        return False


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """No OS_* settings of the caller; a HOME of our own, so no user clouds.yaml is read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"HOME": str(home), "PYTHONUNBUFFERED": "1", **(extra or {})})
    return env


def token_env(home: Path, url: str, token: str) -> dict[str, str]:
    return clean_env(home, {"OS_AUTH_TYPE": "admin_token", "OS_ENDPOINT": url, "OS_TOKEN": token})


def run(
    argv: Sequence[str], env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [openstack_path(), *argv], env=dict(env), capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def batch(commands: Sequence[str], env: Mapping[str, str], timeout: float = 180) -> list[Output]:
    """Runs the commands in one `openstack` process, in order; one Output per command."""
    script = "".join(f"{command}\nshell echo {_MARK}\n" for command in commands)
    proc = subprocess.run(
        [openstack_path()], input=script, env=dict(env), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    parts = proc.stdout.split(_MARK + "\n")
    if len(parts) != len(commands) + 1:
        raise AssertionError(f"expected {len(commands)} outputs, got: {proc.stdout}")
    return [Output(part.strip()) for part in parts[:-1]]
