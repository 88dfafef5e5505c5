"""What a live-migrated VM says when it wakes up on its new hypervisor: QEMU's self-announce.

After a live migration QEMU sends, on the destination, a few RARP frames from each NIC's MAC
(``qemu_announce_self``: EtherType 0x8035, opcode 3 "reverse request", sender and target
hardware address the VM's MAC, both protocol addresses 0.0.0.0, to the broadcast address),
so that every switch on the way learns where that MAC is now. Its defaults (``announce-initial``
50 ms, ``announce-step`` 100 ms, ``announce-max`` 550 ms, ``announce-rounds`` 5) put the five
frames 50, 150, 250 and 350 ms apart. The lab's VMs are namespaces, not QEMU guests, so the
lab sends the same frames from the VM's ``eth0`` itself (:func:`announce`).

The frame is RFC 903's: the ARP layout of RFC 826 under another EtherType.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import threading
import time
from pathlib import Path
from typing import Final

from tunnelnet.errors import TunnelnetError
from tunnelnet.packet import arp, ethernet

ETH_TYPE_RARP: Final = 0x8035  # RFC 903
OP_REVERSE_REQUEST: Final = 3  # RFC 903 section "Protocol": opcode 3, reply 4
BROADCAST: Final = "ff:ff:ff:ff:ff:ff"
MIN_FRAME: Final = 60  # an Ethernet frame without its FCS, as QEMU pads it
# QEMU's defaults: the gap after round n is initial + n * step, at most max (milliseconds)
ANNOUNCE_INITIAL_MS: Final = 50
ANNOUNCE_STEP_MS: Final = 100
ANNOUNCE_MAX_MS: Final = 550
ANNOUNCE_ROUNDS: Final = 5
CLONE_NEWNET: Final = 0x40000000  # <sched.h>
NETNS_DIR: Final = Path("/run/netns")


class AnnounceError(TunnelnetError):
    """The VM's announcement could not be sent."""


def rarp_frame(mac: str) -> bytes:
    """One self-announce frame for MAC, padded to the 60-byte Ethernet minimum."""
    body = arp.build(arp.Arp(OP_REVERSE_REQUEST, mac, "0.0.0.0", mac, "0.0.0.0"))
    frame = ethernet.build(ethernet.Ethernet(BROADCAST, mac, ETH_TYPE_RARP), body)
    return frame.ljust(MIN_FRAME, b"\x00")


def gaps_ms(rounds: int = ANNOUNCE_ROUNDS) -> list[int]:
    """The pauses between the rounds' frames: [50, 150, 250, 350] for QEMU's defaults."""
    return [min(ANNOUNCE_INITIAL_MS + n * ANNOUNCE_STEP_MS, ANNOUNCE_MAX_MS)
            for n in range(rounds - 1)]


def _packet_socket_in(netns: str, ifname: str) -> socket.socket:
    """An AF_PACKET socket bound to IFNAME of namespace NETNS.

    A socket belongs to the namespace it was made in, and setns(2) moves only the calling
    thread: so a short-lived thread enters the namespace, makes the socket and ends, and this
    process stays where it was."""
    made: list[socket.socket] = []
    failed: list[str] = []

    def enter_and_open() -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        try:
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
        except OSError as exc:
            failed.append(f"namespace {netns}: {exc.strerror}")
            return
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                failed.append(f"setns({netns}): {os.strerror(ctypes.get_errno())}")
                return
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            try:
                sock.bind((ifname, 0))
            except OSError as exc:
                sock.close()
                failed.append(f"{netns}/{ifname}: {exc.strerror}")
                return
            made.append(sock)
        finally:
            os.close(fd)

    thread = threading.Thread(target=enter_and_open, name=f"announce-{netns}")
    thread.start()
    thread.join()
    if failed or not made:
        raise AnnounceError(f"cannot send from {netns}/{ifname}: "
                            f"{'; '.join(failed) or 'no socket'}")
    return made[0]


def announce(netns: str, ifname: str, mac: str, rounds: int = ANNOUNCE_ROUNDS) -> float:
    """Send QEMU's self-announce from IFNAME in NETNS; returns the seconds it took."""
    frame = rarp_frame(mac)
    started = time.monotonic()
    with _packet_socket_in(netns, ifname) as sock:
        sock.send(frame)
        for gap in gaps_ms(rounds):
            time.sleep(gap / 1000)
            sock.send(frame)
    return time.monotonic() - started
