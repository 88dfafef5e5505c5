"""Whether a socket is busy, to choose how to read it: one packet with the socket's own call
while it is quiet, a burst with recvmmsg while it is busy.

recvmmsg goes through ctypes and a loop over its message headers. Under load that is the
cheapest way to read (one system call for up to a burst), but for the one packet a quiet
socket has, both cost more than the plain call: measured here with pings 2 ms apart, through a
minimal forwarder, about 9 us for the ctypes call and 9 us for the loop on each receive, at a
hop's start when the caches are cold. A ping crosses four receives each way.

A socket is quiet until it is read again within BUSY_GAP of the last read (packets are
coming faster than a ping's), busy until a burst read finds one packet or none. A quiet read
takes one packet: if more were waiting, the level-triggered event loop calls again at once,
and that second read, so soon after the first, finds the socket busy.
"""

from __future__ import annotations

from typing import Final

BUSY_GAP: Final = 0.0002  # seconds between reads below which a socket counts as busy


class Pace:
    __slots__ = ("busy", "last")

    def __init__(self) -> None:
        self.busy = False
        self.last = -1.0  # when a quiet read was made (monotonic seconds)

    def quiet(self, now: float) -> bool:
        """Whether to read one packet the plain way now (else a burst: call ``burst`` with
        how many the burst had)."""
        if self.busy:
            return False
        if now - self.last < BUSY_GAP:
            self.busy = True
            return False
        self.last = now
        return True

    def burst(self, packets: int, now: float) -> None:
        if packets <= 1:
            self.busy = False
            self.last = now
