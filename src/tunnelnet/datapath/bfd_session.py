"""One BFD session in asynchronous mode (RFC 5880), as Open vSwitch runs one on a tunnel port:
the state machine, the timers and the poll sequence, with no sockets and an injected clock.

The owner (bfd_monitor.py) hands every received control packet to ``receive``, calls ``run``
when ``wake_time`` comes, and sends ``next_control()`` whenever ``due()`` says so. Times are
the clock's seconds; intervals are milliseconds, as in the ``bfd`` column, and microseconds on
the wire.

What is followed, by section of RFC 5880:

- 6.2 and 6.8.6: the state machine (Down -> Init on a Down, Down/Init -> Up on Init/Up, Up ->
  Down on a Down with diagnostic 3, any -> Down on AdminDown), and the reception checks in
  their order (version, length, multiplier, multipoint, discriminators, authentication).
- 6.8.3: while not Up, control packets go at most once a second.
- 6.8.4: the detection time is the remote multiplier times the larger of our required min RX
  and the remote desired min TX; when it passes without a packet, Init/Up -> Down, diagnostic 1.
- 6.8.7: transmission every max(our desired min TX, remote required min RX) less 0-25 % of
  jitter (10-25 % with a multiplier of 1); none while the remote's required min RX is 0; a
  Poll is answered at once with Final.
- 6.5 and 6.8.3: a changed interval while Up takes effect through a poll sequence.

Open vSwitch's choices where the RFC leaves room (lib/bfd.c): ``forwarding`` is Up with no
path-down diagnostic from the remote; ``flap_count`` counts its changes; ``cpath_down`` makes
our diagnostic "Concatenated Path Down"; ``decay_min_rx`` lowers the rate we ask for while the
interface receives little but BFD; an unauthenticated implementation refuses the A bit.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Final

from tunnelnet.datapath.bfd_config import BfdConfig
from tunnelnet.packet import bfd
from tunnelnet.packet.bfd import Control, Diag, Flag, State
from tunnelnet.packet.errors import PacketError

log = logging.getLogger(__name__)

NOT_UP_MIN_TX: Final = 1000  # ms: RFC 5880 section 6.8.3
DECAY_MIN_INTERVAL: Final = 2000  # ms: Open vSwitch judges decay over at least this long
_REMOTE_PATH_DOWN: Final = frozenset({Diag.PATH_DOWN, Diag.CONCATENATED_PATH_DOWN,
                                      Diag.REVERSE_CONCATENATED_PATH_DOWN})

Clock = Callable[[], float]
# (session, state before, state after, local diagnostic): told of every change of state
StateChanged = Callable[["Session", State, State, Diag], None]


class Session:
    """bfd.* of RFC 5880 section 6.8.1 for one interface, and Open vSwitch's status of it."""

    def __init__(self, name: str, config: BfdConfig, discriminator: int, *,
                 clock: Clock = time.monotonic, rng: random.Random | None = None,
                 rx_packets: Callable[[], int] | None = None,
                 on_change: StateChanged | None = None) -> None:
        if not 0 < discriminator < 1 << 32:
            raise ValueError(f"BFD discriminator {discriminator} is not 1..2^32-1")
        self.name = name
        self.my_disc = discriminator
        self._clock = clock
        self._rng = rng or random.Random()
        self._rx_packets = rx_packets or (lambda: 0)
        self._on_change = on_change
        now = clock()
        self.state = State.DOWN
        self.diag = Diag.NONE
        self.remote_state = State.DOWN
        self.remote_diag = Diag.NONE
        self.remote_disc = 0
        self.remote_min_rx = 1  # ms; RFC 5880 6.8.1: initialised to 1
        self.remote_min_tx = 0
        self.remote_mult = 0
        self.flags = Flag(0)  # POLL while we poll, FINAL while an answer is owed
        self.forwarding = False
        self.flap_count = 0
        self.changed_at = now
        self.received_at: float | None = None
        self.packets_received = 0
        self.packets_sent = 0
        self.discarded: dict[str, int] = {}  # why received packets were refused
        self.last_tx = 0.0
        self.next_tx = 0.0  # due at once: the first packet starts the session
        self.detect_at = float("inf")
        self.config = config
        self.min_tx = config.min_tx  # bfd.DesiredMinTxInterval
        self.min_rx = config.min_rx  # bfd.RequiredMinRxInterval
        self.poll_min_tx = self.min_tx
        self.poll_min_rx = self.min_rx
        self.in_decay = False
        self._decay_at = float("inf")
        self._decay_rx_packets = 0
        self._decay_controls = 0
        if config.cpath_down:
            self.diag = Diag.CONCATENATED_PATH_DOWN

    # --- configuration ----------------------------------------------------------------------

    def reconfigure(self, config: BfdConfig) -> None:
        """New settings; intervals changed while Up take effect through a poll sequence."""
        old, self.config = self.config, config
        if config.min_tx != old.min_tx and (self.state is not State.UP or (
                not self._polling and config.min_tx < self.min_tx)):
            self.min_tx = config.min_tx
        if config.min_rx != old.min_rx and (self.state is not State.UP or (
                not self._polling and config.min_rx > self.min_rx)):
            self.min_rx = config.min_rx
        if config.decay_min_rx != old.decay_min_rx or config.min_rx != old.min_rx:
            self.in_decay = False
            self._decay_restart(self._clock())
        if config.cpath_down != old.cpath_down:
            self._set_state(self.state, Diag.NONE)
        if config != old:
            self._poll()

    @property
    def _polling(self) -> bool:
        return bool(self.flags & Flag.POLL)

    def _poll(self) -> None:
        """Begin a poll sequence (RFC 5880 6.5) for the configured intervals, if Up-ish."""
        if self.state > State.DOWN and not self._polling and not self.flags & Flag.FINAL:
            self.poll_min_tx = self.config.min_tx
            self.poll_min_rx = self.config.decay_min_rx if self.in_decay else self.config.min_rx
            self.flags |= Flag.POLL
            self.next_tx = 0.0
            log.info("%s: BFD poll sequence for min_tx %d ms, min_rx %d ms", self.name,
                     self.poll_min_tx, self.poll_min_rx)

    # --- receive ----------------------------------------------------------------------------

    def receive(self, payload: bytes, ttl: int = bfd.TTL) -> str | None:
        """One received control packet (the UDP payload): None when it was taken, else why it
        was discarded (counted in ``discarded``)."""
        now = self._clock()
        self._decay_controls += 1
        reason = self._refusal(payload, ttl)
        if reason is not None:
            self.discarded[reason] = self.discarded.get(reason, 0) + 1
            log.debug("%s: BFD control packet discarded: %s", self.name, reason)
            return reason
        control, _ = bfd.parse(payload)
        remote_state = State(control.state)
        self.packets_received += 1
        self.received_at = now
        self.remote_disc = control.my_disc
        self.remote_state = remote_state
        self.remote_diag = _diag(control.diag)
        if control.final and self._polling:
            self.min_tx, self.min_rx = self.poll_min_tx, self.poll_min_rx
            self.flags &= ~Flag.POLL
        if control.poll:
            self.flags = (self.flags & ~Flag.POLL) | Flag.FINAL  # answered at once (6.8.7)
        self.remote_mult = control.detect_mult
        # 0 stays 0 (send nothing periodic); anything under a millisecond counts as one
        remote_min_rx = -(-control.min_rx // 1000)
        if remote_min_rx != self.remote_min_rx:
            self.remote_min_rx = remote_min_rx
            self._schedule_tx()
        self.remote_min_tx = max(control.min_tx // 1000, 1)
        self.detect_at = now + self._rx_interval() * self.remote_mult / 1000
        if self.state is State.ADMIN_DOWN:
            return None  # 6.8.6: an AdminDown session ignores what it receives
        if remote_state is State.ADMIN_DOWN:
            if self.state is not State.DOWN:
                self._set_state(State.DOWN, Diag.NEIGHBOR_DOWN)
        elif self.state is State.DOWN:
            if remote_state is State.DOWN:
                self._set_state(State.INIT, self.diag)
            elif remote_state is State.INIT:
                self._set_state(State.UP, self.diag)
        elif self.state is State.INIT:
            if remote_state in (State.INIT, State.UP):
                self._set_state(State.UP, self.diag)
        elif remote_state is State.DOWN:  # Up
            self._set_state(State.DOWN, Diag.NEIGHBOR_DOWN)
        self._update_forwarding()
        return None

    def _refusal(self, payload: bytes, ttl: int) -> str | None:
        """Why RFC 5880 section 6.8.6 (and RFC 5881 section 5's TTL) discards this packet."""
        if ttl != bfd.TTL:
            return "ttl_not_255"
        try:
            control, _ = bfd.parse(payload)
        except PacketError:
            return "too_short"
        if control.version != bfd.VERSION:
            return "bad_version"
        if control.length < bfd.LENGTH or control.length > len(payload):
            return "bad_length"
        if control.flags & Flag.AUTH:  # we do no authentication; Open vSwitch refuses too
            return "authentication"
        if control.detect_mult == 0:
            return "zero_multiplier"
        if control.flags & Flag.MULTIPOINT:
            return "multipoint"
        if control.my_disc == 0:
            return "zero_my_discriminator"
        if control.your_disc != 0 and control.your_disc != self.my_disc:
            return "wrong_your_discriminator"
        if control.your_disc == 0 and control.state not in (State.DOWN, State.ADMIN_DOWN):
            return "zero_your_discriminator"
        return None

    # --- timers -----------------------------------------------------------------------------

    def run(self) -> None:
        """What time alone changes: the detection time passing, decay, polls still owed."""
        now = self._clock()
        if self.state > State.DOWN and now >= self.detect_at:
            self._set_state(State.DOWN, Diag.EXPIRED)
        if self.state is State.UP and self.config.decay_min_rx > 0 and now >= self._decay_at:
            self._try_decay(now)
        wanted_rx = self.config.decay_min_rx if self.in_decay else self.config.min_rx
        if self.min_tx != self.config.min_tx or self.min_rx != wanted_rx:
            self._poll()
        self._update_forwarding()

    def wake_time(self) -> float:
        """When ``run`` or a send is next needed (clock seconds)."""
        if self.flags & Flag.FINAL:
            return 0.0
        # no periodic packet while the remote asks for none (due() says so too)
        wake = self.next_tx if self.remote_min_rx > 0 else float("inf")
        if self.state > State.DOWN:
            wake = min(wake, self.detect_at)
        if self.state is State.UP and self.config.decay_min_rx > 0:
            wake = min(wake, self._decay_at)
        return wake

    def due(self) -> bool:
        """Whether a control packet should go now: a Final owed, or the periodic one, unless
        the remote asked for none (required min RX 0, RFC 5880 6.8.7)."""
        if self.flags & Flag.FINAL:
            return True
        return self.remote_min_rx > 0 and self._clock() >= self.next_tx

    def next_control(self) -> Control:
        """The control packet to send now; the next periodic one is scheduled from it."""
        if self._polling:
            min_tx, min_rx = self.poll_min_tx, self.poll_min_rx
        else:
            min_tx, min_rx = self._desired_min_tx(), self.min_rx
        control = Control(state=self.state, my_disc=self.my_disc, your_disc=self.remote_disc,
                          diag=self.diag, flags=int(self.flags & (Flag.POLL | Flag.FINAL)),
                          detect_mult=self.config.mult, min_tx=min_tx * 1000,
                          min_rx=min_rx * 1000)
        self.flags &= ~Flag.FINAL
        self.packets_sent += 1
        self.last_tx = self._clock()
        self._schedule_tx()
        return control

    def admin_down(self) -> Control:
        """Take the session down administratively (RFC 5880 6.8.16): the packet to send so the
        peer goes Down at once with "Neighbor Signaled Session Down" instead of waiting out
        its detection time."""
        self._set_state(State.ADMIN_DOWN, Diag.ADMIN_DOWN)
        self._update_forwarding()
        return self.next_control()

    def _desired_min_tx(self) -> int:
        return self.min_tx if self.state is State.UP else max(self.min_tx, NOT_UP_MIN_TX)

    def tx_interval(self) -> int:
        """Milliseconds between periodic packets, before jitter."""
        return max(self._desired_min_tx(), self.remote_min_rx)

    def _rx_interval(self) -> int:
        return max(self.min_rx, self.remote_min_tx)

    def detection_time(self) -> int:
        """Milliseconds without a packet after which the session goes Down (RFC 5880 6.8.4)."""
        return self._rx_interval() * self.remote_mult

    def _schedule_tx(self) -> None:
        interval: float = self.tx_interval()
        if self.config.mult == 1:  # 6.8.7: then no more than 90 % of the interval
            interval -= interval * (10 + self._rng.randrange(16)) / 100
        else:
            interval -= interval * self._rng.randrange(26) / 100
        self.next_tx = self.last_tx + interval / 1000

    # --- decay (Open vSwitch's decay_min_rx) ------------------------------------------------

    def _decay_restart(self, now: float) -> None:
        self._decay_rx_packets = self._rx_packets()
        self._decay_controls = 0
        self._decay_at = now + max(self.config.decay_min_rx, DECAY_MIN_INTERVAL) / 1000

    def _try_decay(self, now: float) -> None:
        """In decay when the interface received hardly more than BFD itself (Open vSwitch
        allows twice the control packets counted, for counters read at other moments)."""
        received = self._rx_packets() - self._decay_rx_packets
        self.in_decay = received <= 2 * max(self._decay_controls, 1)
        self._decay_restart(now)

    # --- state ------------------------------------------------------------------------------

    def _set_state(self, state: State, diag: Diag) -> None:
        if self.config.cpath_down:
            diag = Diag.CONCATENATED_PATH_DOWN
        if state is self.state and diag is self.diag:
            return
        old = self.state
        self.state, self.diag = state, diag
        if state is not old:
            self.changed_at = self._clock()
        if state <= State.DOWN:  # forget the remote: a new session must begin (6.8.1)
            self.remote_state = State.DOWN
            self.remote_diag = Diag.NONE
            self.remote_min_rx = 1
            self.remote_disc = 0
            self.remote_min_tx = 0
            self.flags &= ~Flag.POLL
            if self.in_decay:
                self.min_rx = self.config.min_rx
                self.in_decay = False
        if state is State.UP and self.config.decay_min_rx:
            self._decay_restart(self._clock())
        if state is not old:
            log.info("%s: BFD state %s -> %s (%s)", self.name, old.label, state.label,
                     diag.text)
            if self._on_change is not None:
                self._on_change(self, old, state, diag)

    def _update_forwarding(self) -> None:
        forwarding = self.state is State.UP and self.remote_diag not in _REMOTE_PATH_DOWN
        if forwarding != self.forwarding:
            self.forwarding = forwarding
            self.flap_count += 1

    def since_change(self) -> float:
        """Seconds since the state last changed."""
        return self._clock() - self.changed_at

    def status(self) -> dict[str, str]:
        """The ``bfd_status`` column, keys and words as Open vSwitch writes them."""
        return {"state": self.state.label, "forwarding": "true" if self.forwarding else "false",
                "diagnostic": self.diag.text, "remote_state": self.remote_state.label,
                "remote_diagnostic": self.remote_diag.text,
                "flap_count": str(self.flap_count)}


def _diag(code: int) -> Diag:
    try:
        return Diag(code)
    except ValueError:  # reserved codes (9-31): shown as none rather than refusing the packet
        return Diag.NONE
