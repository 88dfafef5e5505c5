"""Throw-away network namespaces for root tests: unique names, exact cleanup.

Every namespace made here is named ``tn-<pid>-<n>`` and recorded, so teardown removes exactly
what this test made (and the veths inside die with their namespace). Setup goes through the
``ip`` command on purpose: the oracle side of a test should not share code with the project.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TypeVar

_counter = itertools.count()
_CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def run(args: Sequence[str], *, netns: str | None = None, timeout: float = 30.0,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (inside ``netns`` when given); raises with its stderr when it fails."""
    cmd = [*(["ip", "netns", "exec", netns] if netns else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


class Lab:
    """Namespaces and links made for one test; ``close()`` removes all of them."""

    def __init__(self) -> None:
        self.namespaces: list[str] = []

    def netns(self, role: str = "") -> str:
        name = f"tn-{os.getpid()}-{next(_counter)}"
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str, *, mtu: int | None = None) -> None:
        """A veth pair with one end in each namespace, both up."""
        tmp = f"tnv{os.getpid() % 100000}x{next(_counter)}"
        run(["ip", "link", "add", tmp, "type", "veth", "peer", "name", f"{tmp}p"])
        run(["ip", "link", "set", tmp, "netns", ns_a])
        run(["ip", "link", "set", f"{tmp}p", "netns", ns_b])
        run(["ip", "-n", ns_a, "link", "set", tmp, "name", if_a])
        run(["ip", "-n", ns_b, "link", "set", f"{tmp}p", "name", if_b])
        for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
            if mtu is not None:
                run(["ip", "-n", ns, "link", "set", ifname, "mtu", str(mtu)])
            run(["ip", "-n", ns, "link", "set", ifname, "up"])

    def addr(self, ns: str, ifname: str, cidr: str) -> None:
        run(["ip", "-n", ns, "addr", "add", cidr, "dev", ifname])

    def bridge(self, ns: str, name: str, members: Sequence[str] = ()) -> None:
        run(["ip", "-n", ns, "link", "add", name, "type", "bridge"])
        run(["ip", "-n", ns, "link", "set", name, "up"])
        for member in members:
            run(["ip", "-n", ns, "link", "set", member, "master", name])

    def offloads_off(self, ns: str, ifname: str) -> None:
        """Userspace datapaths see raw frames: no partial checksums, no GSO super-frames."""
        run(["ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off"],
            netns=ns, check=False)

    def close(self) -> None:
        for name in reversed(self.namespaces):
            pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
            run(["ip", "netns", "del", name], check=False)
        self.namespaces.clear()


def inside(ns: str, make: Callable[[], T]) -> T:
    """``make()`` run by a short-lived thread that entered ``ns`` (setns changes only the
    calling thread), so a test can open sockets or ports there and use them from its own
    thread: a socket stays in the namespace it was made in."""
    made: list[T] = []
    failed: list[BaseException] = []

    def enter_and_make() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {ns} failed")
            made.append(make())
        except BaseException as exc:  # handed to the caller's thread below
            failed.append(exc)
        finally:
            os.close(fd)

    thread = threading.Thread(target=enter_and_make)
    thread.start()
    thread.join(timeout=30)
    if failed:
        raise failed[0]
    if not made:
        raise TimeoutError(f"making something inside {ns} took more than 30 s")
    return made[0]


@contextmanager
def lab() -> Iterator[Lab]:
    made = Lab()
    try:
        yield made
    finally:
        made.close()


def two_hypervisors(made: Lab, *, vm_mtu: int | None = None) -> dict[str, str]:
    """The reference topology of the recipes: an underlay bridge namespace, two hypervisors
    (eth0 = 192.0.2.1/.2 on the underlay) and a VM namespace behind each (hv ``tap1``/``tap2``
    <-> vm ``eth0`` = 10.0.0.1/.2, offloads off). Returns the namespace names by role."""
    ns = {role: made.netns(role) for role in ("ul", "hv1", "hv2", "vm1", "vm2")}
    made.bridge(ns["ul"], "br0")
    for i in (1, 2):
        made.veth(ns["ul"], f"ul{i}", ns[f"hv{i}"], "eth0")
        run(["ip", "-n", ns["ul"], "link", "set", f"ul{i}", "master", "br0"])
        made.addr(ns[f"hv{i}"], "eth0", f"192.0.2.{i}/24")
        made.veth(ns[f"hv{i}"], f"tap{i}", ns[f"vm{i}"], "eth0", mtu=vm_mtu)
        made.addr(ns[f"vm{i}"], "eth0", f"10.0.0.{i}/24")
        made.offloads_off(ns[f"vm{i}"], "eth0")
        made.offloads_off(ns[f"hv{i}"], f"tap{i}")
    return ns
