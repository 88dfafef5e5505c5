"""Ports of the datapath: what a port is, its counters, and the local kinds (internal, patch).
The system port (an existing Linux interface) is system_port.py's; tunnel ports are
tunnel_port.py's, because they share sockets across ports (tunnel.py).

A port owns its file descriptor (if any) and can ``receive()`` a burst of frames and
``send()`` one. The daemon wires ports to bridges; a port knows nothing of flow tables.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Final

from tunnelnet.datapath.errors import PortError
from tunnelnet.packet.offload import Gso, SuperFrame, segment_tcp

BURST: Final = 64  # frames read per readiness event before giving other sockets a turn
_RECV_SIZE: Final = 65535
# What receive() hands on: a frame, and for a TCP super-frame (TSO/GSO from the sender) how
# it is cut into segments; None for an ordinary frame.
Received = tuple[bytes, Gso | None]

TUNSETIFF: Final = 0x400454CA
TUNSETPERSIST: Final = 0x400454CB
IFF_TAP: Final = 0x0002
IFF_NO_PI: Final = 0x1000
IFNAMSIZ: Final = 16


class PortKind(enum.Enum):
    # Enum's own __hash__ is Python code: a call per packet where a kind is part of a dict
    # key (the tunnel demultiplexer's); members are singletons, so identity's hash will do
    __hash__ = object.__hash__

    SYSTEM = "system"
    INTERNAL = "internal"
    PATCH = "patch"
    VXLAN = "vxlan"
    GRE = "gre"
    GENEVE = "geneve"

    @classmethod
    def parse(cls, text: str) -> PortKind:
        try:
            return cls(text)
        except ValueError:
            known = ", ".join(k.value for k in cls)
            raise PortError(f"unknown port type {text!r} (known: {known})") from None


@dataclass(slots=True)
class PortStats:
    """Counters as ``ovs-ofctl dump-ports`` shows them."""

    rx_packets: int = 0
    rx_bytes: int = 0
    rx_dropped: int = 0
    rx_errors: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_dropped: int = 0
    tx_errors: int = 0

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def check_name(name: str) -> str:
    """Port names become Linux interface names for internal ports; keep the same rules for all."""
    if not name or len(name) >= IFNAMSIZ or "/" in name or name in (".", "..") or any(
        c.isspace() or c == ":" for c in name
    ):
        raise PortError(
            f"bad port name {name!r}: 1-15 characters, no spaces, '/' or ':'"
        )
    return name


def check_options(kind: PortKind, options: Mapping[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        allowed_text = ", ".join(sorted(allowed)) or "none"
        raise PortError(
            f"{kind.value} port: unknown option(s) {', '.join(unknown)} (allowed: {allowed_text})"
        )


class Port:
    """Base of every port. ``fileno()`` is -1 for ports that are not read by the loop."""

    kind: PortKind

    def __init__(self, name: str, options: Mapping[str, str]) -> None:
        self.name = check_name(name)
        self.options = dict(options)
        self.stats = PortStats()
        self.bridge = ""  # set by the daemon when the port joins a bridge
        self.ofport = 0

    def fileno(self) -> int:
        return -1

    def receive(self) -> list[Received]:
        return []

    def readers(self) -> list[tuple[int, Callable[[], list[Received]]]]:
        """The descriptors the event loop watches for this port, each with what reads it."""
        return [(self.fileno(), self.receive)] if self.fileno() >= 0 else []

    def send(self, frame: bytes) -> None:
        raise NotImplementedError

    def send_many(self, frames: list[bytes]) -> None:
        """Send frames of one flow (equal flow keys and lengths), in their order."""
        for frame in frames:
            self.send(frame)

    def send_super(self, frame: bytes, gso: Gso) -> None:
        """Send a TCP super-frame: by default cut into its segments, one send each."""
        for segment in segment_tcp(SuperFrame(frame, gso.mss)):
            self.send(segment)

    def close(self) -> None:
        """Release what the port holds (sockets, tap devices)."""

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "type": self.kind.value, "options": dict(self.options)}


class InternalPort(Port):
    """A tap device made by the daemon so the host can have an address on the bridge.

    Like Open vSwitch's internal ports it starts administratively down. By default it is not
    persistent: closing the file descriptor (port deletion, daemon exit, even a crash) removes
    the device. A ``persistent`` one (a daemon that keeps its configuration, ``--persist``)
    outlives a crash, as Open vSwitch's internal ports outlive ovs-vswitchd in the kernel
    datapath: the restarted daemon takes the same device back, with its addresses, instead of
    waiting for the kernel to unregister hundreds of taps (about 18 ms each) and making them
    again. Only a detached tap of that name is taken; deleting the port removes the device.
    """

    kind = PortKind.INTERNAL

    def __init__(self, name: str, options: Mapping[str, str], *,
                 persistent: bool = False) -> None:
        super().__init__(name, options)
        check_options(self.kind, options, set())
        self.persistent = persistent
        exists = True
        try:
            socket.if_nametoindex(name)
        except OSError:
            exists = False
        if exists and not persistent:
            raise PortError(f"internal port {name!r}: an interface of that name already exists")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise PortError(f"internal port {name!r}: cannot open /dev/net/tun: {exc}") from None
        try:
            # on an existing name this attaches to a detached tap (a crashed daemon's) and
            # fails for anything else: a tap in use (EBUSY) or another kind of device
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
            if persistent:
                fcntl.ioctl(fd, TUNSETPERSIST, 1)
        except OSError as exc:
            os.close(fd)
            what = "take the existing tap device" if exists else "create tap device"
            raise PortError(f"internal port {name!r}: cannot {what}: {exc}") from None
        os.set_blocking(fd, False)
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def receive(self) -> list[Received]:
        frames: list[Received] = []
        read = os.read
        for _ in range(BURST):
            try:
                frames.append((read(self._fd, _RECV_SIZE), None))
            except BlockingIOError:
                break
            except OSError:
                self.stats.rx_errors += 1
                break
        return frames

    def send(self, frame: bytes) -> None:
        try:
            os.write(self._fd, frame)
        except OSError as exc:
            # EIO while the device is down, EAGAIN when its queue is full: a drop, as on a NIC
            self.stats.tx_dropped += 1
            if exc.errno not in (errno.EIO, errno.EAGAIN, errno.ENOBUFS):
                self.stats.tx_errors += 1
            return
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(frame)

    def close(self) -> None:
        """Closes the device's descriptor, which removes the device (persistent or not)."""
        if self._fd >= 0:
            if self.persistent:
                with contextlib.suppress(OSError):
                    fcntl.ioctl(self._fd, TUNSETPERSIST, 0)
            os.close(self._fd)
            self._fd = -1


class PatchPort(Port):
    """One end of an in-process link between two bridges (``options:peer=<other port>``).

    Output to it re-enters the peer's bridge with the peer as in_port; the daemon does that,
    because only it knows the peer (which may be added later than this end).
    """

    kind = PortKind.PATCH

    def __init__(self, name: str, options: Mapping[str, str]) -> None:
        super().__init__(name, options)
        check_options(self.kind, options, {"peer"})
        peer = options.get("peer", "")
        if not peer:
            raise PortError(f"patch port {name!r}: options:peer=<port name> is required")
        if peer == name:
            raise PortError(f"patch port {name!r}: cannot be its own peer")
        self.peer = peer

    def send(self, frame: bytes) -> None:  # the daemon routes patch output itself
        raise PortError(f"patch port {self.name!r}: frames cross it in the daemon")
