"""The MTU doctor on an Open vSwitch hypervisor: the agent answers frames too big for a tunnel.

Open vSwitch (userspace datapath) drops a frame whose encapsulation is over the underlay MTU
without a word. So br-tun's flows (agent/br_tun.py ``mtu_check``/``too_big``) compare each
frame from br-int with its network's largest frame (``check_pkt_larger``) and send a larger
one to the controller with userdata naming the reason and that length; this module is that
controller. It connects to br-tun's management socket (``RUNDIR/br-tun.mgmt``, a service
connection: it changes no role and no flow), asks for NXT_PACKET_IN2 (only it carries
userdata) and for packet-ins of the controller action, and answers each as our vswitchd's
datapath does, with the same function (``packet/pmtu.py`` ``answer``):

- IPv4 with DF / IPv6: the ICMP "fragmentation needed" / ICMPv6 "packet too big" goes back
  out of the port the frame came in by (patch-int, ``output:IN_PORT``), tagged with the
  sender's local VLAN as the frame was, so br-int's NORMAL hands it to the sender.
- IPv4 without DF: the RFC 791 fragments go through br-tun's tables from table 0 as if they
  came from patch-int (``output:TABLE``); they fit, so they pass the check and leave by the
  same flows as the frame would have. The same answer as on our vswitchd, at the cost of a
  trip through the agent for each such frame (rare: Linux sets DF on TCP and on PMTU-aware
  UDP); dropping them instead would black-hole a non-PMTU-aware application.
- Anything else: dropped (``mtu_exceeded``), as on our vswitchd.

Counted per reason (``stats``), written to ``STATUS_FILE`` in the agent's run directory for
operators, logged at most once per ``LOG_EVERY`` seconds. At most ``RATE`` packet-ins a second
are answered (the rest counted ``rate_limited``), so a VM sending oversize frames on purpose
costs the agent a bounded amount of work; Open vSwitch itself queues at most a hundred
packet-ins per connection. Nothing a packet-in carries can stop the loop: a message that
does not decode is counted ``malformed`` and the connection is kept, a broken stream is
reconnected.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from tunnelnet.agent import openflow
from tunnelnet.errors import TunnelnetError
from tunnelnet.packet import pmtu

log = logging.getLogger(__name__)

# userdata of the doctor's controller action: magic, version, reason, the largest frame
# (with its local VLAN tag) the network's tunnels take whole
USERDATA: Final = struct.Struct("!4sBBH")
MAGIC: Final = b"tnMD"
USERDATA_VERSION: Final = 1
REASON_TUNNEL_MTU: Final = 1
STATUS_FILE: Final = "mtu-doctor.json"
RATE: Final = 1000.0  # packet-ins answered per second, sustained
BURST: Final = 200.0
LOG_EVERY: Final = 10.0
RECONNECT: Final = 1.0
_RECV: Final = 1 << 16
# what packet/pmtu.py could raise on bytes it was never meant to see: it reads only what it
# checked the length of, but a malformed packet must cost a count, never the loop
_BAD_BYTES: Final = (ValueError, IndexError, struct.error, TunnelnetError)


def userdata(max_frame: int) -> bytes:
    return USERDATA.pack(MAGIC, USERDATA_VERSION, REASON_TUNNEL_MTU, max_frame)


def userdata_text(max_frame: int) -> str:
    """As ovs-ofctl writes and prints a controller action's userdata: dotted hex bytes."""
    return ".".join(f"{b:02x}" for b in userdata(max_frame))


def max_frame_of(data: bytes) -> int | None:
    """The largest frame a packet-in's userdata names; None if it is not the doctor's."""
    if len(data) != USERDATA.size:
        return None
    magic, version, reason, max_frame = USERDATA.unpack(data)
    if magic != MAGIC or version != USERDATA_VERSION or reason != REASON_TUNNEL_MTU:
        return None
    return int(max_frame)


@dataclass(frozen=True, slots=True)
class Treatment:
    """What the doctor does with one packet-in: messages to send back, the count to bump."""

    reason: str
    why: str
    send: tuple[bytes, ...] = ()


def treat(pin: openflow.PacketIn) -> Treatment:
    """The answer to one packet-in, as a pure function (the unit tests' entry)."""
    max_frame = max_frame_of(pin.userdata)
    if max_frame is None:
        return Treatment("foreign", "a packet-in the MTU doctor's flows did not send")
    if pin.in_port is None or pin.in_port >= openflow.Port.IN_PORT:
        return Treatment("malformed", f"a packet-in without an input port ({pin.in_port})")
    if pin.full_len != len(pin.packet):
        return Treatment("malformed", f"a packet-in of {len(pin.packet)} of "
                         f"{pin.full_len} bytes: the frame was cut")
    if len(pin.packet) <= max_frame:
        return Treatment("fits", f"a {len(pin.packet)}-byte frame is not over {max_frame}")
    answer = pmtu.answer(pin.packet, max_frame)
    if answer.reply is not None:
        out = openflow.packet_out(pin.in_port, [openflow.action_output(openflow.Port.IN_PORT)],
                                  answer.reply)
        return Treatment(answer.what.value, answer.why, (out,))
    if answer.fragments:
        table = [openflow.action_output(openflow.Port.TABLE)]
        return Treatment(answer.what.value, answer.why,
                         tuple(openflow.packet_out(pin.in_port, table, f)
                               for f in answer.fragments))
    return Treatment(answer.what.value, answer.why)


@dataclass(slots=True)
class _Bucket:
    """A token bucket: ``take`` is False once more than RATE/s (BURST at once) were taken."""

    rate: float = RATE
    burst: float = BURST
    tokens: float = BURST
    stamp: float = field(default_factory=time.monotonic)

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class MtuDoctor:
    """The connection to br-tun's management socket and the loop that serves it."""

    def __init__(self, mgmt_socket: Path, status_dir: Path | None = None, *,
                 connect: Callable[[Path], socket.socket] | None = None) -> None:
        self.mgmt_socket = mgmt_socket
        self.status_path = status_dir / STATUS_FILE if status_dir is not None else None
        self._connect = connect or _unix_connect
        self.stats: dict[str, int] = {}
        self._bucket = _Bucket()
        self._last_log = 0.0
        self._unlogged = 0
        self._written: dict[str, int] | None = None
        self._written_at = 0.0
        self._lock = threading.Lock()

    def count(self, reason: str) -> None:
        with self._lock:
            self.stats[reason] = self.stats.get(reason, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.stats)

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop``; reconnects whenever the switch goes away."""
        while not stop.is_set():
            try:
                sock = self._connect(self.mgmt_socket)
            except OSError as exc:
                log.debug("MTU doctor: %s not reachable (%s)", self.mgmt_socket, exc)
                stop.wait(RECONNECT)
                continue
            try:
                log.info("MTU doctor: serving packet-ins of %s", self.mgmt_socket)
                self._serve(sock, stop)
            except (OSError, openflow.OpenFlowError) as exc:
                log.warning("MTU doctor: connection to %s lost (%s); reconnecting",
                            self.mgmt_socket, exc)
            finally:
                sock.close()
                self._write_status(force=True)
            stop.wait(RECONNECT)

    def _serve(self, sock: socket.socket, stop: threading.Event) -> None:
        sock.settimeout(0.5)
        sock.sendall(openflow.hello() + openflow.set_packet_in_format_nxt2(1) +
                     openflow.set_async_packet_in(xid=2))
        buffer = bytearray()
        while not stop.is_set():
            self._write_status()
            try:
                chunk = sock.recv(_RECV)
            except TimeoutError:
                continue
            if not chunk:
                raise OSError("the switch closed the connection")
            buffer += chunk
            for message in openflow.messages(buffer):
                self._dispatch(sock, message)

    def _dispatch(self, sock: socket.socket, message: openflow.Message) -> None:
        if message.type == openflow.MsgType.ECHO_REQUEST:
            sock.sendall(openflow.echo_reply(message))
        elif message.type == openflow.MsgType.ERROR:
            log.warning("MTU doctor: the switch refused a message: %s", message.body[:12].hex())
        elif openflow.nx_subtype(message) == openflow.NxSubtype.PACKET_IN2:
            self._packet_in(sock, message)

    def _packet_in(self, sock: socket.socket, message: openflow.Message) -> None:
        now = time.monotonic()
        if not self._bucket.take(now):
            self.count("rate_limited")
            return
        try:
            treatment = treat(openflow.decode_packet_in2(message))
        except (openflow.OpenFlowError, *_BAD_BYTES) as exc:
            treatment = Treatment("malformed", str(exc))
        self.count(treatment.reason)
        for out in treatment.send:
            sock.sendall(out)
        self._log(now, treatment)

    def _log(self, now: float, treatment: Treatment) -> None:
        if now - self._last_log < LOG_EVERY:
            self._unlogged += 1
            return
        more = f" (and {self._unlogged} more since the last line)" if self._unlogged else ""
        log.info("MTU doctor: %s: %s%s; counts %s", treatment.reason, treatment.why, more,
                 self.snapshot())
        self._last_log, self._unlogged = now, 0

    def _write_status(self, *, force: bool = False) -> None:
        """At most once a second (unless ``force``), and only when a count changed."""
        now = time.monotonic()
        if self.status_path is None or (now - self._written_at < 1.0 and not force):
            return
        stats = self.snapshot()
        if stats == self._written:
            return
        self._written, self._written_at = stats, now
        tmp = self.status_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"mgmt_socket": str(self.mgmt_socket),
                                       "counts": stats}, sort_keys=True) + "\n")
            os.replace(tmp, self.status_path)
        except OSError as exc:
            log.debug("MTU doctor: cannot write %s (%s)", self.status_path, exc)


def _unix_connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def start(mgmt_socket: Path, status_dir: Path | None, stop: threading.Event) -> MtuDoctor:
    """A doctor serving in a daemon thread until ``stop``."""
    doctor = MtuDoctor(mgmt_socket, status_dir)
    threading.Thread(target=doctor.run, args=(stop,), name="mtu-doctor", daemon=True).start()
    return doctor
