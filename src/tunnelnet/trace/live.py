"""``--live``: send the traced packet from VM1 and hold the trace to what really happens.

Three kinds of evidence, each independent of the trace's own reasoning:
- per-flow counters: every flow the trace says matched must have counted at least one more
  packet (read from each switch's dump-flows before and after);
- the underlay: tcpdump on the underlay switch's port of every sending hypervisor; each
  predicted encapsulation must be on the wire carrying exactly our frame with the predicted
  outer addresses, VNI/key, UDP source port and length, and no unpredicted one may be;
- arrival: tcpdump on VM2's eth0 sees our frame if and only if the trace said "delivered".

The frame is identified by its bytes (it carries a random marker in its payload), so other
traffic on the lab (replies, neighbour discovery) can neither help nor hurt. Background
traffic may add to counters; it can never remove a count, so a missing increment is real.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tunnelnet.lab import names
from tunnelnet.packet import ipv4, tunnel_kinds
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import ETH_TYPE_IPV4, IPPROTO_UDP
from tunnelnet.packet.tunnel_kinds import Transport
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.model import Journey
from tunnelnet.trace.pcap import read_frames
from tunnelnet.trace.real import RealLab

# seconds to wait for the frame to cross three switches and the underlay: at least SETTLE
# (copies elsewhere, counters), and when it is expected at VM2 until it is seen there or
# PATIENCE has passed (a loaded machine); -U makes tcpdump write each packet at once
SETTLE: Final = 0.4
PATIENCE: Final = 3.0
START_TIMEOUT: Final = 5.0
_FLOW = re.compile(r"table=(\d+), n_packets=(\d+), .*?priority=(\d+),?(\S*) actions=")

_SENDER: Final = (
    "import socket,sys;s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);"
    "s.bind((sys.argv[1],0));s.send(bytes.fromhex(sys.argv[2]))"
)


def counters(lines: list[str]) -> dict[tuple[int, int, str], int]:
    out = {}
    for line in lines:
        m = _FLOW.search(line)
        if m:
            out[(int(m.group(1)), int(m.group(3)), m.group(4))] = int(m.group(2))
    return out


@dataclass(slots=True)
class _Capture:
    label: str
    netns: str
    iface: str
    path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, bpf: str) -> None:
        self.proc = subprocess.Popen(
            # --immediate-mode: without it a frame can sit in a TPACKET_V3 block that is not
            # retired yet when tcpdump is stopped, and is lost from the file
            ["ip", "netns", "exec", self.netns, "tcpdump", "-i", self.iface, "-n", "-U",
             "--immediate-mode", "-s", "0", "-w", str(self.path), *bpf.split()],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # tcpdump says "listening on" once its socket is bound; wait for that, bounded
        err = self.proc.stderr
        if err is None:
            raise TraceError("tcpdump without stderr")
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while time.monotonic() < deadline:
            line = err.readline()
            if b"listening on" in line or not line:
                break
        if b"listening on" not in line:
            self.stop()
            raise TraceError(f"tcpdump on {self.netns}/{self.iface} did not start: "
                             f"{line.decode(errors='replace').strip()}")

    def stop(self) -> list[bytes]:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None
        return read_frames(self.path)


def capture_filter() -> str:
    """tcpdump's filter for every registered kind: its UDP port or its IP protocol."""
    return " or ".join(f"udp port {k.number}" if k.transport is Transport.UDP
                       else f"ip proto {k.number}" for k in tunnel_kinds.all_kinds())


def _outer(frame: bytes) -> dict[str, Any] | None:
    """Outer IPv4 + tunnel header of an underlay frame, or None when it is not a tunnel packet.

    The kind is the registry's for the IP protocol, or for UDP the destination port.
    """
    if len(frame) < 34 or int.from_bytes(frame[12:14], "big") != ETH_TYPE_IPV4:
        return None
    try:
        ip, off = ipv4.parse(frame, 14)
        end = 14 + (ip.total_length or 0)
        udp_src: int | None = None
        if ip.proto == IPPROTO_UDP:
            kind = tunnel_kinds.by_number(Transport.UDP,
                                          int.from_bytes(frame[off + 2:off + 4], "big"))
            udp_src = int.from_bytes(frame[off:off + 2], "big")
            off += 8
        else:
            kind = tunnel_kinds.by_number(Transport.IP, ip.proto)
        if kind is None:
            return None
        key, inner = kind.decap_payload(frame[off:end], 0)
        return {"type": kind.name, "src": ip.src, "dst": ip.dst, "key": key,
                "udp_src": udp_src, "ip_length": ip.total_length, "inner": bytes(inner)}
    except PacketError:
        return None
    return None


def _same_frame(seen: bytes, sent: bytes) -> bool:
    # a short frame may come back padded to Ethernet's 60-byte minimum
    return seen == sent or (seen.startswith(sent) and not seen[len(sent):].strip(b"\0"))


def send(netns: str, frame: bytes, iface: str = "eth0") -> None:
    proc = subprocess.run(["ip", "netns", "exec", netns, "python3", "-c", _SENDER, iface,
                           frame.hex()], capture_output=True, text=True, timeout=10,
                          check=False)
    if proc.returncode != 0:
        raise TraceError(f"sending from {netns} failed: {proc.stderr.strip()}")


def check(lab: RealLab, journey: Journey, *, evidence_dir: Path | None = None
          ) -> dict[str, Any]:
    """Send the journey's frame and compare; the captures are kept in ``evidence_dir`` when
    given (for tshark or a human), else removed."""
    if evidence_dir is not None:
        evidence_dir.mkdir(parents=True, exist_ok=True)
        return _check(lab, journey, evidence_dir, keep=True)
    with tempfile.TemporaryDirectory(prefix="tunnelnet-live-") as tmp:
        return _check(lab, journey, Path(tmp), keep=False)


def _check(lab: RealLab, journey: Journey, workdir: Path, *, keep: bool) -> dict[str, Any]:
    src, dst = journey.src["name"], journey.dst["name"]
    frame = bytes.fromhex(_frame_hex(journey))
    visits = [v for v in journey.visits if not v.hypothetical]
    bridges = sorted({(v.host, v.bridge) for v in visits})
    before = {hb: counters(lab.switch(hb[0]).dump_flows(hb[1])) for hb in bridges}
    senders = sorted({e.from_host for e in journey.encaps} | {journey.src["hypervisor"]})
    underlay = [_Capture(f"underlay-{h}", names.UNDERLAY_NS, names.underlay_port(h),
                         workdir / f"underlay-{h}.pcap") for h in senders]
    at_dst = _Capture(f"vm-{dst}", lab.vm_netns(dst), lab.vm_interface(dst),
                      workdir / f"vm-{dst}.pcap")
    at_src = _Capture(f"vm-{src}", lab.vm_netns(src), lab.vm_interface(src),
                      workdir / f"vm-{src}.pcap")
    captures = [*underlay, at_dst, at_src]
    try:
        for cap in underlay:
            cap.start(capture_filter())
        at_dst.start("")
        at_src.start("arp")
        send(lab.vm_netns(src), frame, lab.vm_interface(src))
        expected = any(e.what == "delivered" and e.vm == dst and not e.hypothetical
                       for e in journey.outcome.ends)
        time.sleep(SETTLE)
        deadline = time.monotonic() + PATIENCE - SETTLE
        while expected and time.monotonic() < deadline and not any(
                _same_frame(f, frame) for f in read_frames(at_dst.path)):
            time.sleep(0.05)
        time.sleep(0.05)  # the other copies and the counters, a moment behind
    finally:
        frames = {cap.label: cap.stop() for cap in captures}
    after = {hb: counters(lab.switch(hb[0]).dump_flows(hb[1])) for hb in bridges}
    lines: list[str] = []
    failures: list[str] = []

    # 1. counters of every predicted flow
    flows: list[dict[str, Any]] = []
    for v in visits:
        for s in v.steps:
            if s.priority < 0:
                continue
            k = (s.table, s.priority, s.match)
            b, a = before[(v.host, v.bridge)].get(k), after[(v.host, v.bridge)].get(k)
            rose = a is not None and b is not None and a > b
            flows.append({"host": v.host, "bridge": v.bridge, "table": s.table,
                          "priority": s.priority, "match": s.match, "before": b, "after": a,
                          "rose": rose})
            if not rose:
                failures.append(f"{v.host} {v.bridge} table {s.table} priority {s.priority} "
                                f"{s.match or '(any)'}: n_packets {b} -> {a}, did not rise")
    lines.append(f"counters: {sum(f['rose'] for f in flows)}/{len(flows)} predicted flows "
                 "counted the packet")

    # 2. the underlay
    seen: list[dict[str, Any]] = []
    for cap in underlay:
        for f in frames[cap.label]:
            outer = _outer(f)
            if outer is not None and _same_frame(outer["inner"], frame):
                seen.append({k: v for k, v in outer.items() if k != "inner"})
    wire: list[dict[str, Any]] = []
    unmatched = list(seen)
    for e in journey.encaps:
        want = {"type": e.type, "src": e.outer_src, "dst": e.outer_dst, "key": e.key,
                "udp_src": e.udp_src, "ip_length": e.outer_ip_length}
        # a VXLAN source port left open by the trace (a switch that picks its own) matches any
        hit = next((u for u in unmatched if u == want or (
            want["udp_src"] is None and tunnel_kinds.kind(e.type).transport is Transport.UDP
            and u | {"udp_src": None} == want)),
            None)
        if e.fits and hit is None:
            failures.append(f"predicted on the underlay but not seen: {_desc(want)}"
                            + (f"; seen instead: {', '.join(_desc(u) for u in unmatched)}"
                               if unmatched else ""))
        if hit is not None:
            unmatched.remove(hit)
        wire.append({"predicted": want, "seen": hit is not None,
                     "observed_udp_src": hit["udp_src"] if hit is not None else None})
    for extra in unmatched:
        failures.append(f"on the underlay but not predicted: {_desc(extra)}")
    lines.append(f"underlay: {len(seen)} tunnel packet(s) carried the frame; "
                 f"{sum(w['seen'] for w in wire)}/{len(wire)} predicted encapsulations seen "
                 "as predicted")

    # 3. arrival
    arrived = any(_same_frame(f, frame) for f in frames[at_dst.label])
    predicted = any(e.what == "delivered" and e.vm == dst and not e.hypothetical
                    for e in journey.outcome.ends)
    if arrived != predicted:
        failures.append(f"{dst} {'received' if arrived else 'did not receive'} the frame; the "
                        f"trace said it would{'' if predicted else ' not'}")
    lines.append(f"arrival: {dst}'s {lab.vm_interface(dst)} "
                 f"{'received' if arrived else 'did not receive'} the "
                 f"frame (predicted: {'yes' if predicted else 'no'})")
    answered = [e for e in journey.outcome.ends if e.what == "answered"]
    if answered:
        reply = any(_is_arp_reply(f, journey.dst["ip"]) for f in frames[at_src.label])
        lines.append(f"ARP reply for {journey.dst['ip']} at {src}: "
                     f"{'seen' if reply else 'NOT seen'}")
        if not reply:
            failures.append(f"the trace said {src} gets an ARP reply; none came")
    lines += [f"FAIL: {f}" for f in failures]
    return {"ok": not failures, "failures": failures, "lines": lines, "flows": flows,
            "underlay": wire, "underlay_seen": seen, "arrived": arrived,
            "evidence": {cap.label: str(cap.path) for cap in captures} if keep else {}}


def _is_arp_reply(frame: bytes, ip: str) -> bool:
    return (len(frame) >= 42 and frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x02"
            and socket.inet_ntoa(frame[28:32]) == ip)


def _desc(o: dict[str, Any]) -> str:
    key = f"{tunnel_kinds.kind(o['type']).key_name.lower()} {o['key']}"
    udp = f" udp src {o['udp_src']}" if o.get("udp_src") is not None else ""
    return f"{o['type']} {o['src']} -> {o['dst']} {key}{udp} ip len {o['ip_length']}"


def _frame_hex(journey: Journey) -> str:
    frame = journey.packet.get("frame")
    if not isinstance(frame, str):
        raise TraceError("the journey does not carry its frame; trace it again")
    return frame
