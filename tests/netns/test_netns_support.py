"""The namespace fixture itself: the reference topology carries traffic and leaves nothing."""

from __future__ import annotations

import subprocess

import pytest

from support.netns import lab, run, two_hypervisors

pytestmark = pytest.mark.netns


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_underlay_connects_hypervisors_and_cleanup_removes_every_namespace() -> None:
    with lab() as made:
        ns = two_hypervisors(made)
        ping = run(["ping", "-c3", "-i0.2", "-W2", "192.0.2.2"], netns=ns["hv1"], check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        # VMs are not connected yet: that is the job of the datapath under test
        isolated = run(["ping", "-c1", "-W1", "10.0.0.2"], netns=ns["vm1"], check=False)
        assert isolated.returncode != 0
        assert set(ns.values()) <= _namespaces()
        ours = set(made.namespaces)
    # only what this test made is checked: other tests and labs may come and go meanwhile
    assert not ours & _namespaces()
