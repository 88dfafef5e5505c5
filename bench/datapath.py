"""Side-by-side datapath benchmark: tunnelnet against Linux and Open vSwitch's userspace datapath.

For each datapath, one after another in one run: build two hypervisor namespaces on an
underlay bridge with a VM namespace behind each and connect them with that datapath. Then
measure iperf3 TCP (1 and 4 streams), iperf3 UDP with 64-byte payloads (delivered packets/s),
ping RTT (average and p99), the datapath process's CPU seconds per gigabit of TCP and the whole
machine's (which counts a kernel datapath's softirq work too), in
rounds: each round measures every datapath once (the next round in the opposite order), so
that a slow spell of the machine falls on all of them alike instead of on whichever was being
measured then, and the ratios compare like with like. RTT moves most with the machine's
moment (tenths of a millisecond, where a neighbour's burst is felt), so a round's pings go
in blocks that take turns between the datapaths. Reports medians over the rounds, prints
a table with ratios to Open vSwitch userspace (same encapsulation) and to kernel VXLAN, writes
JSON and a bar chart. Everything it made is removed at the end, also on Ctrl-C or SIGTERM.

A benchmark, not a test: nothing here asserts a speed. Root only.
    python -m bench.datapath [--seconds 5] [--repeats 3] [--pings 1000] [--only a,b] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import FrameType

from bench.netlab import (
    BenchError,
    Figures,
    Lab,
    connected,
    interleaved_ping_times,
    measure,
    rtt_figures,
)
from bench.setups import DATAPATHS

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = [f.name for f in fields(Figures)]
RTT_BLOCKS = 5  # each round's pings per datapath, in blocks taking turns between datapaths
LOWER_IS_BETTER = {"rtt_avg_ms", "rtt_p99_ms", "cpu_s_per_gbit", "machine_cpu_s_per_gbit"}
_HEAD = {"tcp1_gbps": "TCP1 Gb/s", "tcp4_gbps": "TCP4 Gb/s", "udp64_pps": "UDP64 pps",
         "rtt_avg_ms": "RTT ms", "rtt_p99_ms": "p99 ms", "cpu_s_per_gbit": "CPU s/Gb",
         "machine_cpu_s_per_gbit": "host CPU s/Gb"}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def reference_for(name: str) -> str:
    """Open vSwitch with the same tunnel kind; plain and kernel runs compare with its VXLAN
    (a ``-fastpath`` run with the same kind as without)."""
    kind = name.removesuffix("-fastpath").rpartition("-")[2]
    return f"ovs-{kind}" if f"ovs-{kind}" in DATAPATHS else "ovs-vxlan"


@dataclass
class Prepared:
    """One datapath's lab, built and connected, ready to be measured."""

    name: str
    lab: Lab
    rundir: Path
    pids: list[int]
    runs: list[Figures] = field(default_factory=list)


def prepare(name: str, workdir: Path, made: list[Lab]) -> Prepared:
    """Build ``name``'s lab (appended to ``made`` first, so that it is removed whatever
    happens) and check that its VMs reach each other."""
    lab = Lab(f"tnb{os.getpid()}-{list(DATAPATHS).index(name)}")
    made.append(lab)
    rundir = workdir / name
    rundir.mkdir()
    lab.build()
    pids = DATAPATHS[name](lab, rundir)
    lab.spawn(["iperf3", "-s"], netns=lab.ns("vm2"), log=rundir / "iperf3.out")
    time.sleep(0.5)
    if not connected(lab):
        raise BenchError(f"{name}: vm1 cannot ping vm2 (logs in {rundir})")
    return Prepared(name, lab, rundir, pids)


def summary(p: Prepared, profile: list[tuple[str, int]]) -> dict[str, object]:
    median = {m: _median([getattr(r, m) for r in p.runs]) for m in METRICS}
    return {"runs": [asdict(r) for r in p.runs], "median": median,
            **({"profile_top": profile} if profile else {})}


def measure_all(names: list[str], args: argparse.Namespace, workdir: Path, made: list[Lab],
                results: dict[str, dict[str, object]], errors: dict[str, str]) -> None:
    """Set up every datapath, measure them in rounds, profile; fills ``results`` and
    ``errors`` (a datapath that cannot be set up is left out of the rounds)."""
    ready: list[Prepared] = []
    for name in names:
        print(f"setting up {name} ...", file=sys.stderr, flush=True)
        try:
            ready.append(prepare(name, workdir, made))
        except BenchError as exc:
            errors[name] = str(exc)
            print(f"  {name} failed: {exc}", file=sys.stderr)
    for round_ in range(args.repeats):
        order = ready if round_ % 2 == 0 else ready[::-1]
        for p in order:
            print(f"round {round_ + 1}/{args.repeats}: measuring {p.name} ...",
                  file=sys.stderr, flush=True)
            p.runs.append(measure(p.lab, seconds=args.seconds, pings=0, cpu_pids=p.pids))
        if args.pings and order:
            print(f"round {round_ + 1}/{args.repeats}: pinging all in turns ...",
                  file=sys.stderr, flush=True)
            times = interleaved_ping_times([p.lab for p in order], args.pings, RTT_BLOCKS)
            for p, own in zip(order, times, strict=True):
                p.runs[-1].rtt_avg_ms, p.runs[-1].rtt_p99_ms = rtt_figures(own)
    for p in ready:
        profile: list[tuple[str, int]] = []
        if args.profile and p.name.startswith("tunnelnet") and p.pids:
            profile = profile_under_load(p.lab, p.pids[0], args.seconds, p.rundir)
        results[p.name] = summary(p, profile)


def profile_under_load(lab: Lab, pid: int, seconds: float, rundir: Path
                       ) -> list[tuple[str, int]]:
    """py-spy samples of one vswitchd while iperf3 TCP runs: the functions that cost most
    (self time), as (function (file:line), share of samples in per mille)."""
    spy = Path(sys.executable).with_name("py-spy")
    raw = rundir / "profile.txt"
    rec = subprocess.Popen([str(spy), "record", "--pid", str(pid), "--format", "raw",
                            "--rate", "250", "--duration", f"{max(1, int(seconds))}",
                            "--output", str(raw), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "netns", "exec", lab.ns("vm1"), "iperf3", "-c", "10.0.0.2", "-t",
                    f"{seconds + 1:g}"], capture_output=True, timeout=seconds + 30,
                   check=False)
    rec.wait(timeout=seconds + 30)
    if not raw.exists():
        return []
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        own[stack.split(";")[-1]] += int(count)
    return [(frame, round(1000 * n / total)) for frame, n in own.most_common(15)]


def ratios(results: dict[str, dict[str, object]]) -> dict[str, dict[str, float | None]]:
    """Each datapath's figures divided by Open vSwitch userspace's (same encapsulation) and
    by kernel VXLAN's, per metric; for lower-is-better metrics the ratio is still ours/theirs."""
    out: dict[str, dict[str, float | None]] = {}
    for name, res in results.items():
        med = res["median"]
        assert isinstance(med, dict)
        row: dict[str, float | None] = {}
        for ref_label, ref in (("ovs", reference_for(name)), ("kernel", "kernel-vxlan")):
            ref_med = results.get(ref, {}).get("median")
            for metric in METRICS:
                ours = med.get(metric)
                theirs = ref_med.get(metric) if isinstance(ref_med, dict) else None
                row[f"{metric}_x_{ref_label}"] = (ours / theirs if ours is not None and theirs
                                                  else None)
        out[name] = row
    return out


ROUND_METRICS = ("tcp1_gbps", "udp64_pps", "rtt_avg_ms")


def round_ratios(results: dict[str, dict[str, object]]) -> dict[str, dict[str, list[float]]]:
    """The headline ratios round by round (each round measures every datapath once, so the
    i-th runs belong together): how far the medians' ratio is from any one round's shows how
    much of it is the machine's moment. Rounds a figure is missing from are left out."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, res in results.items():
        row: dict[str, list[float]] = {}
        for ref_label, ref in (("ovs", reference_for(name)), ("kernel", "kernel-vxlan")):
            theirs_runs = results.get(ref, {}).get("runs")
            ours_runs = res.get("runs")
            if ref == name or not isinstance(theirs_runs, list) or not isinstance(ours_runs,
                                                                                 list):
                continue
            for metric in ROUND_METRICS:
                pairs = zip(ours_runs, theirs_runs, strict=False)
                row[f"{metric}_x_{ref_label}"] = [
                    ours[metric] / theirs[metric] for ours, theirs in pairs
                    if ours.get(metric) is not None and theirs.get(metric)]
        out[name] = row
    return out


def round_lines(by_round: dict[str, dict[str, list[float]]]) -> list[str]:
    """One line per datapath compared with Open vSwitch: TCP1, pps and RTT ratio by round."""
    lines = []
    for name, row in by_round.items():
        parts = [f"{label} {' '.join(f'{v:.2f}' for v in row[key])}"
                 for label, key in (("TCP1", "tcp1_gbps_x_ovs"), ("pps", "udp64_pps_x_ovs"),
                                    ("RTT", "rtt_avg_ms_x_ovs")) if row.get(key)]
        if parts:
            lines.append(f"  {name}: " + "; ".join(parts))
    return (["x Open vSwitch (same encapsulation), round by round:", *lines] if lines
            else [])


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric == "udp64_pps":
        return f"{value:,.0f}"
    if metric in ("cpu_s_per_gbit", "machine_cpu_s_per_gbit"):
        return f"{value:.2f}"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def table(results: dict[str, dict[str, object]],
          rat: dict[str, dict[str, float | None]]) -> str:
    head = ["datapath", *(_HEAD[m] for m in METRICS), "TCP1 xOVS", "pps xOVS", "RTT xOVS",
            "TCP1 xKVX"]
    rows = [head]
    for name, res in results.items():
        med = res["median"]
        assert isinstance(med, dict)
        r = rat[name]

        def x(key: str, r: dict[str, float | None] = r) -> str:
            v = r.get(key)
            return "-" if v is None else f"{v:.2f}x"

        rows.append([name, *(_fmt(med.get(m), m) for m in METRICS),
                     x("tcp1_gbps_x_ovs"), x("udp64_pps_x_ovs"), x("rtt_avg_ms_x_ovs"),
                     x("tcp1_gbps_x_kernel")])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                               enumerate(zip(row, widths, strict=True))) for row in rows)


def chart(results: dict[str, dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    shown = ["tcp1_gbps", "tcp4_gbps", "udp64_pps", "rtt_avg_ms"]
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 4.5))
    for ax, metric in zip(axes, shown, strict=True):
        values = []
        for n in names:
            med = results[n]["median"]
            assert isinstance(med, dict)
            values.append(med.get(metric) or 0.0)
        colors = ["tab:green" if n.startswith("tunnelnet") else
                  "tab:blue" if n.startswith("ovs") else "tab:gray" for n in names]
        ax.bar(range(len(names)), values, color=colors)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(_HEAD[metric] + (" (lower is better)" if metric in LOWER_IS_BETTER
                                      else ""), fontsize=9)
        if metric.endswith("gbps"):
            ax.set_yscale("log")
    fig.suptitle("tunnelnet datapath vs Linux and Open vSwitch userspace (medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.datapath", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="per iperf3 run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--only", default="", help="comma-separated datapaths, of: "
                        + ", ".join(DATAPATHS))
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for JSON + PNG")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="also sample tunnelnet's vswitchd with py-spy under TCP load")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(DATAPATHS)
    unknown = [n for n in names if n not in DATAPATHS]
    if unknown:
        parser.error(f"unknown datapath(s) {', '.join(unknown)}; known: {', '.join(DATAPATHS)}")
    if os.geteuid() != 0:
        print("bench.datapath needs root (network namespaces)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    results: dict[str, dict[str, object]] = {}
    errors: dict[str, str] = {}
    load_before = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="tnbench-") as tmp:
            made: list[Lab] = []
            try:
                measure_all(names, args, Path(tmp), made, results, errors)
            finally:  # before the directory goes: the daemons write their logs there
                for lab in made:
                    lab.close()
    except KeyboardInterrupt:
        print("interrupted: everything made was removed", file=sys.stderr)
        return 130
    rat = ratios(results)
    by_round = round_ratios(results)
    print(table(results, rat))
    for line in round_lines(by_round):
        print(line)
    for name, res in results.items():
        for frame, share in res.get("profile_top", []):  # type: ignore[attr-defined]
            print(f"  profile {name}: {share / 10:5.1f}%  {frame}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": [load_before, os.getloadavg()[0]],
        "settings": {"seconds": args.seconds, "repeats": args.repeats, "pings": args.pings},
        "results": results, "ratios": rat, "round_ratios": by_round, "errors": errors,
    }
    (args.out / "datapath.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_chart and results:
        chart(results, args.out / "datapath.png")
    print(f"wrote {args.out / 'datapath.json'}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
