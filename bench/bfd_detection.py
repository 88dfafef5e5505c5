"""How fast a cut tunnel is found: BFD's detection time, measured (root, namespaces).

Two hypervisors on an underlay bridge (bench/netlab.py), one VXLAN tunnel between them with
``bfd:enable=true bfd:min_tx=MS bfd:min_rx=MS``: tunnelnet's vswitchd on hv1, and on hv2
either another tunnelnet vswitchd or Open vSwitch's userspace datapath (``--peer ovs``). Each
round waits for both sessions to be up and steady, stops the underlay bridge's port towards
hv2 from carrying anything (bridge port state "disabled"), and times how long each side takes
to say "down"; then lets it carry again and times the way back to "up".

Our side's time of change is its own record (``bfd-show``'s seconds since the change, read a
moment later), so it is exact to the millisecond; Open vSwitch's is when ``ovs-appctl bfd/show``
first says so, asked every few milliseconds. RFC 5880 section 6.8.4 bounds the detection time
by 3 x interval after the last packet, so between 2 x and 3 x the interval after the cut
(packets are sent at 75-100 % of the interval). Nothing is asserted: figures are printed and
written to bench/results/bfd_detection.json.

    python -m bench.bfd_detection [--peer tunnelnet|ovs] [--interval 100] [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.netlab import UNDERLAY, BenchError, Lab, run, wait_for
from bench.setups import OVS_SCHEMA

RESULTS = Path(__file__).with_name("results") / "bfd_detection.json"
PORT = "vxlan-peer"
STEADY = 2.0  # s after both are up: the one-second not-Up rate has given way (RFC 5880 6.8.3)


def _bfd(interval: int) -> dict[str, str]:
    return {"enable": "true", "min_tx": str(interval), "min_rx": str(interval)}


class Ours:
    """A tunnelnet vswitchd with one VXLAN port to the other hypervisor, BFD on."""

    def __init__(self, lab: Lab, d: Path, i: int, interval: int) -> None:
        from tunnelnet.datapath import messages as m
        from tunnelnet.datapath.control import ControlClient

        self._m, self._client, self.rundir = m, ControlClient, d
        hv = lab.ns(f"hv{i}")
        d.mkdir(parents=True)
        proc = lab.spawn([sys.executable, "-m", "tunnelnet", "vswitchd", "--rundir", str(d),
                          "--log-file", str(d / "vswitchd.log")], netns=hv,
                         log=d / "vswitchd.out")

        def pong() -> bool:
            if proc.poll() is not None:
                raise BenchError(f"tunnelnet vswitchd on {hv} exited; see {d}")
            self.call(m.Ping())
            return True

        wait_for(pong, f"tunnelnet vswitchd on {hv}")
        self.call(m.AddBridge("br-tun", fail_mode="secure"))
        self.call(m.AddPort("br-tun", PORT, type="vxlan", bfd=_bfd(interval),
                            options={"remote_ip": UNDERLAY.format(3 - i), "key": "flow"}))

    def call(self, request: object) -> object:
        with self._client(self.rundir, timeout=5) as c:
            return c.call(request)  # type: ignore[arg-type]

    def state(self) -> str:
        shown = self.call(self._m.BfdShow(PORT))
        assert isinstance(shown, dict)
        return str(shown[PORT]["state"])

    def changed_at(self) -> float:
        """When (time.monotonic()) the state last changed, by the daemon's own record."""
        shown = self.call(self._m.BfdShow(PORT))
        assert isinstance(shown, dict)
        return time.monotonic() - float(shown[PORT]["since_change_s"])


class Ovs:
    """Open vSwitch's userspace datapath, the underlay on br-phy, one VXLAN port, BFD on."""

    def __init__(self, lab: Lab, d: Path, i: int, interval: int) -> None:
        hv = lab.ns(f"hv{i}")
        d.mkdir(parents=True)
        self.env = {"OVS_RUNDIR": str(d), "OVS_LOGDIR": str(d), "OVS_DBDIR": str(d)}
        self.d = d
        run(["ovsdb-tool", "create", str(d / "conf.db"), OVS_SCHEMA])
        lab.spawn(["ovsdb-server", f"--remote=punix:{d}/db.sock", f"--pidfile={d}/db.pid",
                   f"--log-file={d}/db.log", str(d / "conf.db")], netns=hv, log=d / "db.out",
                  env=self.env)
        wait_for(lambda: (d / "db.sock").exists(), f"ovsdb-server on {hv}")
        self.vsctl("--no-wait", "init")
        lab.spawn(["ovs-vswitchd", f"unix:{d}/db.sock", f"--pidfile={d}/sw.pid",
                   f"--unixctl={d}/sw.ctl", f"--log-file={d}/sw.log"], netns=hv,
                  log=d / "sw.out", env=self.env)
        run(["ip", "-n", hv, "addr", "flush", "dev", "eth0"])
        self.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                   "--", "add-port", "br-phy", "eth0")
        run(["ip", "-n", hv, "addr", "add", f"{UNDERLAY.format(i)}/24", "dev", "br-phy"])
        run(["ip", "-n", hv, "link", "set", "br-phy", "up"])
        self.vsctl("add-br", "br-tun", "--", "set", "bridge", "br-tun", "datapath_type=netdev",
                   "fail_mode=secure", "--", "add-port", "br-tun", PORT, "--", "set",
                   "interface", PORT, "type=vxlan",
                   f"options:remote_ip={UNDERLAY.format(3 - i)}", "options:key=flow",
                   *(f"bfd:{k}={v}" for k, v in _bfd(interval).items()))
        # its native tunnelling needs the route and neighbour towards the other side
        wait_for(lambda: self._neighbour(hv, i),
                 f"Open vSwitch on {hv} reaching the other hypervisor", timeout=30)

    def _neighbour(self, hv: str, i: int) -> bool:
        out = run(["ping", "-c1", "-W1", UNDERLAY.format(3 - i)], netns=hv, check=False)
        return " 0% packet loss" in out

    def vsctl(self, *args: str) -> str:
        return run(["ovs-vsctl", f"--db=unix:{self.d}/db.sock", "--timeout=20", *args],
                   env=self.env)

    def state(self) -> str:
        out = run(["ovs-appctl", "-t", str(self.d / "sw.ctl"), "bfd/show", PORT],
                  env=self.env)
        for line in out.splitlines():
            if line.strip().startswith("Local Session State:"):
                return line.split(":", 1)[1].strip()
        raise BenchError(f"Open vSwitch's bfd/show has no state: {out[:200]}")


def _until(state: Callable[[], str], wanted: str, timeout: float) -> float:
    """time.monotonic() when ``state()`` first said ``wanted`` (asked every 2 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state() == wanted:
            return time.monotonic()
        time.sleep(0.002)
    raise BenchError(f"not {wanted} within {timeout:.0f} s")


def _carry(lab: Lab, on: bool) -> None:
    run(["bridge", "-n", lab.ns("ul"), "link", "set", "dev", "ul2", "state",
         "3" if on else "0"])


def measure(peer: str, interval: int, rounds: int) -> dict[str, object]:
    lab = Lab(f"tnbfd{os.getpid() % 100000}")
    workdir = Path(tempfile.mkdtemp(prefix="tn-bench-bfd-"))
    try:
        lab.build()
        ours = Ours(lab, workdir / "hv1", 1, interval)
        other: Ours | Ovs = (Ovs(lab, workdir / "hv2", 2, interval) if peer == "ovs"
                             else Ours(lab, workdir / "hv2", 2, interval))
        down: dict[str, list[float]] = {"tunnelnet": [], peer + "-peer": []}
        back: list[float] = []
        for n in range(rounds):
            for side in (ours, other):
                _until(side.state, "up", 30)
            time.sleep(STEADY)
            cut = time.monotonic()
            _carry(lab, False)
            try:
                seen_other = _until(other.state, "down", 10)
                _until(ours.state, "down", 10)
                down["tunnelnet"].append((ours.changed_at() - cut) * 1000)
                down[peer + "-peer"].append(((other.changed_at() if isinstance(other, Ours)
                                              else seen_other) - cut) * 1000)
            finally:
                restored = time.monotonic()
                _carry(lab, True)
            both = max(_until(side.state, "up", 30) for side in (ours, other))
            back.append(both - restored)
            print(f"round {n + 1}: down after " + ", ".join(
                f"{k} {v[-1]:.0f} ms" for k, v in down.items())
                + f"; both up again after {back[-1]:.2f} s", flush=True)
        return {"peer": peer, "interval_ms": interval, "rounds": rounds,
                "bound_ms": [2 * interval, 3 * interval],
                "down_ms": {k: _stats(v) for k, v in down.items()},
                "back_up_s": _stats(back)}
    finally:
        lab.close()


def _stats(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", choices=["tunnelnet", "ovs"], default="ovs")
    parser.add_argument("--interval", type=int, default=100, help="min_tx = min_rx, ms")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.bfd_detection needs root (namespaces)", file=sys.stderr)
        return 2
    try:
        result = measure(args.peer, args.interval, args.rounds)
    except BenchError as exc:
        print(f"bench.bfd_detection: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
