"""One network's dnsmasq: its files written, the process started in the DHCP namespace,
reloaded (SIGHUP) when the files change, restarted when its command line does.

dnsmasq re-reads ``--dhcp-hostsfile`` and ``--dhcp-optsfile`` on SIGHUP, so a port created or
deleted costs no restart. A lease dnsmasq already gave stays in its memory, though, and it
would keep that address for the old MAC; so a removed host's lease is released with
``dhcp_release`` (Debian's dnsmasq-utils), as Neutron's DHCP agent releases it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

from tunnelnet.dhcp.config import NetworkConfig, Paths, dnsmasq_argv, hosts_file, opts_file
from tunnelnet.dhcp.config import released as released_hosts
from tunnelnet.errors import TunnelnetError

log = logging.getLogger(__name__)

STOP_GRACE = 5.0


class DnsmasqError(TunnelnetError):
    """dnsmasq could not be started or exited at once."""


def unreachable_by_others(directory: Path) -> Path | None:
    """The first of ``directory`` and its parents that a user other than its owner cannot
    pass through (None: every one can). dnsmasq drops root for user ``nobody`` and re-reads
    its hosts and options files as that user, so they must be reachable by anyone."""
    for part in [directory.absolute(), *directory.absolute().parents]:
        if part.exists() and not part.stat().st_mode & stat.S_IXOTH:
            return part
    return None


def _write(path: Path, text: str) -> bool:
    """Replace ``path`` atomically (dnsmasq may read it at any moment); True if it changed."""
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)  # dnsmasq reads it as user nobody
    os.replace(tmp, path)
    return True


class Dnsmasq:
    def __init__(self, namespace: str, paths: Paths, interface: str,
                 binary: str = "dnsmasq") -> None:
        self.namespace = namespace
        self.paths = paths
        self.interface = interface
        self.binary = binary
        self.config: NetworkConfig | None = None
        self._argv: list[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running() and self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def apply(self, config: NetworkConfig) -> str:
        """Make dnsmasq serve ``config``; returns what was done (started, restarted,
        reloaded, unchanged)."""
        self.paths.directory.mkdir(parents=True, exist_ok=True)
        changed = _write(self.paths.hosts, hosts_file(config))
        changed = _write(self.paths.opts, opts_file(config)) or changed
        gone = released_hosts(self.config, config)
        argv = dnsmasq_argv(config, self.paths, self.interface, self.binary)
        if not self.running():
            if self._proc is not None:
                log.warning("dnsmasq in %s (pid %d) exited with status %s; starting it again",
                            self.namespace, self._proc.pid, self._proc.returncode)
            self._start(argv)
            action = "started"
        elif argv != self._argv:
            self.stop()
            self._start(argv)
            action = "restarted"
        elif changed and self._proc is not None:
            self._proc.send_signal(signal.SIGHUP)
            action = "reloaded"
        else:
            action = "unchanged"
        for host in gone:
            self._release(host.ip, host.mac)
        self.config = config
        return action

    def _stop_stale(self) -> None:
        """A dnsmasq an earlier agent left serving these files (it died without stopping
        it) holds the DHCP port's socket: stop it, as Neutron's agent does, found by its pid
        file and recognised by its command line naming our hosts file."""
        try:
            pid = int(self.paths.pid.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if f"--dhcp-hostsfile={self.paths.hosts}".encode() not in cmdline:
            return
        log.warning("stopping a dnsmasq left running for %s (pid %d)", self.namespace, pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def _start(self, argv: list[str]) -> None:
        self._stop_stale()
        self.paths.leases.touch(exist_ok=True)
        with open(self.paths.directory / "stderr.log", "ab") as out:
            try:
                # `ip netns exec` execs, so the child's pid is dnsmasq's
                proc = subprocess.Popen(["ip", "netns", "exec", self.namespace, *argv],
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                        start_new_session=True)
            except OSError as exc:
                raise DnsmasqError(f"cannot run {argv[0]}: {exc.strerror}") from exc
        try:
            proc.wait(timeout=0.3)
        except subprocess.TimeoutExpired:
            self._proc, self._argv = proc, argv
            log.info("dnsmasq for %s started (pid %d)", self.namespace, proc.pid)
            return
        tail = (self.paths.directory / "stderr.log").read_text(errors="replace")[-400:]
        raise DnsmasqError(f"dnsmasq in {self.namespace} exited at once "
                           f"(status {proc.returncode}): {tail.strip()}")

    def _release(self, ip: str, mac: str) -> None:
        tool = shutil.which("dhcp_release")
        if tool is None:
            log.warning("dhcp_release is missing (Debian dnsmasq-utils): %s keeps its lease "
                        "on %s until it expires", mac, ip)
            return
        proc = subprocess.run(["ip", "netns", "exec", self.namespace, tool, self.interface,
                               ip, mac], capture_output=True, text=True, timeout=10,
                              check=False)
        if proc.returncode != 0:
            log.warning("dhcp_release %s %s in %s: %s", ip, mac, self.namespace,
                        proc.stderr.strip())

    def stop(self) -> None:
        proc, self._proc, self._argv = self._proc, None, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5.0)
        log.info("dnsmasq for %s stopped", self.namespace)
