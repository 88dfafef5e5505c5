"""BFD on the daemon's tunnel ports: one session (bfd_session.py) per port whose ``bfd`` column
says ``enable=true``, its control packets sent inside the tunnel and taken out of what the
tunnel receives before the tables see it, as Open vSwitch does (ofproto-dpif-monitor.c sends,
xlate's "special" packets receive).

A received frame is the session's when it is IPv4 UDP to port 3784 (packet/bfd.py
``recognize``) and passes the port's optional checks (``bfd_remote_dst_mac``, a ``bfd_src_ip``
other than the default, ``check_tnl_key``); anything else goes on to the tables, as in Open
vSwitch 2.14 and later. One loop timer, set to the earliest deadline of all sessions, drives
sending and detection: no wakeups at all while no port runs BFD.

A session's packets go to the port's tunnel with key 0 (the port's own key when it has one),
as Open vSwitch sends them. Removing a port, or setting ``enable=false``, first sends one
AdminDown packet so the peer goes down at once (RFC 5880 6.8.16).
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping

from tunnelnet.datapath import bfd_config
from tunnelnet.datapath.bfd_session import Session
from tunnelnet.datapath.errors import PortError
from tunnelnet.datapath.loop import EventLoop, Timer
from tunnelnet.datapath.tunnel_port import TunnelPort
from tunnelnet.packet import bfd
from tunnelnet.packet.bfd import Diag, State
from tunnelnet.packet.fields import mac_to_int

log = logging.getLogger(__name__)

_MIN_WAIT = 0.0005  # s: the nearest a deadline timer is set

# (port, frame): put one control frame into the port's tunnel (key 0 or the port's own key)
SendFrame = Callable[[TunnelPort, bytes], None]
# (port name, state before, state after, diagnostic): told of every change, for whoever
# watches tunnels (the daemon logs them)
Changed = Callable[[str, State, State, Diag], None]


class BfdMonitor:
    """Sessions by tunnel port, and the one timer that runs them."""

    def __init__(self, loop: EventLoop, send: SendFrame, *,
                 rng: random.Random | None = None) -> None:
        self._loop = loop
        self._send = send
        self._rng = rng or random.SystemRandom()
        self._sessions: dict[str, tuple[TunnelPort, Session, bfd.Envelope]] = {}
        self._udp_ports = itertools.cycle(bfd.SOURCE_PORTS)  # unique per session (RFC 5881 4)
        self._timer_due = float("inf")
        self._timer: Timer | None = None
        self.on_change: Changed | None = None

    # --- configuration ----------------------------------------------------------------------

    def check(self, port_name: str, column: Mapping[str, str]) -> bfd_config.BfdConfig | None:
        """The parsed column, or a PortError; nothing changes (the caller checks before it
        builds)."""
        return bfd_config.parse(column, f"interface {port_name!r}")

    def configure(self, port: TunnelPort, column: Mapping[str, str]) -> None:
        """Start, change or stop ``port``'s session as its ``bfd`` column now says."""
        config = self.check(port.name, column)
        port.bfd_column = dict(column)
        current = self._sessions.get(port.name)
        if config is None:
            self.stop(port)
            return
        if current is not None and current[0] is port:
            _, session, envelope = current
            session.reconfigure(config)
            if _envelope_config(envelope, config, port) != envelope:
                self._sessions[port.name] = (port, session,
                                             _envelope_config(envelope, config, port))
        else:
            session = Session(port.name, config, self._discriminator(), clock=self._loop.now,
                              rx_packets=lambda: port.stats.rx_packets,
                              on_change=self._changed)
            envelope = _envelope_config(bfd.Envelope(
                eth_src=_local_mac(self._rng), eth_dst=b"\0" * 6,
                udp_src=next(self._udp_ports)), config, port)
            self._sessions[port.name] = (port, session, envelope)
            port.bfd = session
            log.info("%s: BFD enabled (min_tx %d ms, min_rx %d ms, mult %d)", port.name,
                     config.min_tx, config.min_rx, config.mult)
        self._reschedule()

    def stop(self, port: TunnelPort) -> None:
        """End ``port``'s session, telling the peer (AdminDown) if it had one."""
        entry = self._sessions.pop(port.name, None)
        port.bfd = None
        if entry is None:
            return
        _, session, envelope = entry
        self._send(port, bfd.frame(envelope, session.admin_down()))
        log.info("%s: BFD disabled", port.name)
        self._reschedule()

    def _discriminator(self) -> int:
        taken = {s.my_disc for _, s, _ in self._sessions.values()}
        while True:
            value = self._rng.randrange(1, 1 << 32)
            if value not in taken:
                return value

    def _changed(self, session: Session, old: State, new: State, diag: Diag) -> None:
        if self.on_change is not None:
            self.on_change(session.name, old, new, diag)

    # --- packets ----------------------------------------------------------------------------

    def take(self, port: TunnelPort, frame: bytes, tun_id: int) -> bool:
        """True when ``frame`` (received on ``port``) was this port's control packet and has
        been handed to its session; False: it goes on to the tables."""
        seen = bfd.recognize(frame)
        if seen is None:
            return False
        entry = self._sessions.get(port.name)
        if entry is None:
            return False
        _, session, _ = entry
        config = session.config
        if config.remote_dst_mac is not None and \
                int.from_bytes(seen.eth_dst, "big") != mac_to_int(config.remote_dst_mac):
            return False
        if config.src_ip != bfd.DEFAULT_SRC_IP and seen.ip_dst != bytes(
                int(part) for part in config.src_ip.split(".")):
            return False
        if config.check_tnl_key and tun_id != 0:
            return False
        session.receive(seen.payload, seen.ttl)
        if session.due():  # a Final owed to a Poll goes at once (RFC 5880 6.8.7)
            self._run()
        else:
            self._reschedule()
        return True

    # --- time -------------------------------------------------------------------------------

    def _run(self) -> None:
        self._timer = None
        self._timer_due = float("inf")
        for port, session, envelope in list(self._sessions.values()):
            session.run()
            if session.due():
                self._send(port, bfd.frame(envelope, session.next_control()))
        self._reschedule()

    def _reschedule(self) -> None:
        if not self._sessions:
            if self._timer is not None:  # the last session went: nothing wakes the daemon
                self._timer.cancelled = True
                self._timer, self._timer_due = None, float("inf")
            return
        due = min(s.wake_time() for _, s, _ in self._sessions.values())
        if due == float("inf"):
            return  # nothing to send or detect until a packet comes
        # never in the past: a deadline that running the sessions did not move (a clock
        # step, a bug) must not turn the loop into a spin
        due = max(due, self._loop.now() + _MIN_WAIT)
        if due < self._timer_due:
            if self._timer is not None:
                self._timer.cancelled = True
            self._timer = self._loop.call_at(due, self._run)
            self._timer_due = due

    # --- what is shown ----------------------------------------------------------------------

    def sessions(self) -> dict[str, Session]:
        return {name: session for name, (_, session, _) in self._sessions.items()}

    def detail(self, port_name: str) -> dict[str, object] | None:
        """``bfd/show``'s facts of one session, times as ages in seconds (None: never)."""
        entry = self._sessions.get(port_name)
        if entry is None:
            return None
        _, s, _ = entry
        now = self._loop.now()
        return {
            **s.status(),
            "local_discriminator": s.my_disc, "remote_discriminator": s.remote_disc,
            "min_tx_ms": s.config.min_tx, "min_rx_ms": s.config.min_rx,
            "mult": s.config.mult, "remote_mult": s.remote_mult,
            "tx_interval_ms": s.tx_interval(), "detection_time_ms": s.detection_time(),
            "remote_min_tx_ms": s.remote_min_tx, "remote_min_rx_ms": s.remote_min_rx,
            "in_decay": s.in_decay,
            "packets_sent": s.packets_sent, "packets_received": s.packets_received,
            "discarded": dict(s.discarded),
            "since_change_s": round(now - s.changed_at, 3),
            "since_rx_s": None if s.received_at is None else round(now - s.received_at, 3),
            "changed_at": round(time.time() - (now - s.changed_at), 3),
        }


def _local_mac(rng: random.Random) -> bytes:
    """A locally administered unicast address for a port that has none of its own."""
    raw = bytearray(rng.randbytes(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return bytes(raw)


def _envelope_config(envelope: bfd.Envelope, config: bfd_config.BfdConfig,
                     port: TunnelPort) -> bfd.Envelope:
    """``envelope`` with the addresses ``config`` asks for (its own source MAC otherwise)."""
    src = (mac_to_int(config.local_src_mac).to_bytes(6, "big") if config.local_src_mac
           else envelope.eth_src)
    return bfd.Envelope(eth_src=src, eth_dst=mac_to_int(config.local_dst_mac).to_bytes(6, "big"),
                        ip_src=config.src_ip, ip_dst=config.dst_ip, udp_src=envelope.udp_src)


def check_tunnel(port: object, name: str) -> TunnelPort:
    """BFD runs on tunnel ports here; any other port is refused by name."""
    if not isinstance(port, TunnelPort):
        raise PortError(f"interface {name!r}: BFD runs on tunnel ports (vxlan, gre, geneve) "
                        "only")
    return port
