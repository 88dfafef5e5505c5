"""A user the kernel does not allow BPF gets the Python path and one line saying why.

Run for real: the loader in a child process as user nobody with no capabilities (setpriv),
against the kernel's own refusal; no namespace is made, nothing is attached.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.tools import require_tool
from tunnelnet.datapath.kernel_fastpath import REPLAY_OBJECT

pytestmark = pytest.mark.root

CHILD = """
import json
from tunnelnet.datapath.kernel_loader import KernelFastPathUnavailable
from tunnelnet.datapath.kernel_fastpath import KernelFastPath
try:
    KernelFastPath.load()
    print(json.dumps({"loaded": True}))
except KernelFastPathUnavailable as exc:
    print(json.dumps({"loaded": False, "errno": exc.errno, "reason": str(exc)}))
"""


def test_loader_without_bpf_permission_refuses_with_eperm_and_says_what_is_needed() -> None:
    setpriv = require_tool("setpriv")
    if not REPLAY_OBJECT.exists():
        pytest.fail(f"{REPLAY_OBJECT} is not built: run `make bpf`")
    proc = subprocess.run([setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups",
                           "--inh-caps=-all", sys.executable, "-c", CHILD],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr  # an answer, never a traceback
    answer = json.loads(proc.stdout)
    assert answer == {"loaded": False, "errno": 1, "reason": answer["reason"]}
    assert "Operation not permitted" in answer["reason"]
    assert "CAP_BPF" in answer["reason"]


def _check(*prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "tunnelnet", "fastpath", "check",
                           "--json"], capture_output=True, text=True, timeout=60, check=False)


def test_fastpath_check_says_available_as_root_and_why_not_as_nobody() -> None:
    setpriv = require_tool("setpriv")
    if not REPLAY_OBJECT.exists():
        pytest.fail(f"{REPLAY_OBJECT} is not built: run `make bpf`")
    as_root = _check()
    assert as_root.returncode == 0, as_root.stderr
    assert json.loads(as_root.stdout) == {"available": True, "object": str(REPLAY_OBJECT),
                                          "reason": ""}
    as_nobody = _check(setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups",
                       "--inh-caps=-all")
    assert as_nobody.returncode == 1 and as_nobody.stderr == ""
    answer = json.loads(as_nobody.stdout)
    assert answer["available"] is False and "Operation not permitted" in answer["reason"]
