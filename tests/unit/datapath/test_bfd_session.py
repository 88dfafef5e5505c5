"""The BFD session against RFC 5880: the state table of section 6.2 / 6.8.6, the reception
checks of 6.8.6, the timers of 6.8.3, 6.8.4 and 6.8.7, and the poll sequence of 6.5. A fake
clock stands in for time; packets are built with scapy's BFD layer where they come from "the
remote", so the session is judged by a codec that is not ours."""

from __future__ import annotations

import random

import pytest
from scapy.contrib.bfd import BFD

from tunnelnet.datapath import bfd_config
from tunnelnet.datapath.bfd_config import BfdConfig
from tunnelnet.datapath.bfd_session import Session
from tunnelnet.datapath.errors import PortError
from tunnelnet.packet import bfd
from tunnelnet.packet.bfd import Diag, Flag, State

MY_DISC = 0x1000
REMOTE_DISC = 0x2000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def remote(state: State, *, your: int = MY_DISC, mine: int = REMOTE_DISC, diag: int = 0,
           flags: str = "", mult: int = 3, tx_us: int = 100_000, rx_us: int = 100_000,
           version: int = 1) -> bytes:
    return bytes(BFD(version=version, diag=diag, sta=int(state), flags=flags, detect_mult=mult,
                     my_discriminator=mine, your_discriminator=your, min_tx_interval=tx_us,
                     min_rx_interval=rx_us, echo_rx_interval=0))


def session(clock: Clock, **config: int) -> Session:
    return Session("vxlan-test", BfdConfig(**config), MY_DISC, clock=clock,  # type: ignore[arg-type]
                   rng=random.Random(1))


def in_state(state: State, clock: Clock) -> Session:
    s = session(clock, min_tx=100, min_rx=100)
    if state is State.INIT:
        s.receive(remote(State.DOWN, your=0))
    elif state is State.UP:
        s.receive(remote(State.INIT))
    elif state is State.ADMIN_DOWN:
        s.admin_down()
    assert s.state is state
    return s


# RFC 5880 section 6.2's diagram (and the pseudocode of 6.8.6): (local state, received state)
# -> local state after
STATE_TABLE = [
    (State.DOWN, State.ADMIN_DOWN, State.DOWN),
    (State.DOWN, State.DOWN, State.INIT),
    (State.DOWN, State.INIT, State.UP),
    (State.DOWN, State.UP, State.DOWN),
    (State.INIT, State.ADMIN_DOWN, State.DOWN),
    (State.INIT, State.DOWN, State.INIT),
    (State.INIT, State.INIT, State.UP),
    (State.INIT, State.UP, State.UP),
    (State.UP, State.ADMIN_DOWN, State.DOWN),
    (State.UP, State.DOWN, State.DOWN),
    (State.UP, State.INIT, State.UP),
    (State.UP, State.UP, State.UP),
    (State.ADMIN_DOWN, State.DOWN, State.ADMIN_DOWN),
    (State.ADMIN_DOWN, State.UP, State.ADMIN_DOWN),
]


@pytest.mark.parametrize(("local", "received", "after"), STATE_TABLE)
def test_state_table_of_rfc_5880(local: State, received: State, after: State) -> None:
    clock = Clock()
    s = in_state(local, clock)
    # a remote in Down/AdminDown may not know our discriminator yet (6.8.6)
    your = 0 if received <= State.DOWN and local is State.DOWN else MY_DISC
    assert s.receive(remote(received, your=your)) is None
    assert s.state is after


@pytest.mark.parametrize(("local", "received", "diag"), [
    (State.UP, State.DOWN, Diag.NEIGHBOR_DOWN),
    (State.UP, State.ADMIN_DOWN, Diag.NEIGHBOR_DOWN),
    (State.INIT, State.ADMIN_DOWN, Diag.NEIGHBOR_DOWN),
])
def test_going_down_on_a_neighbor_says_neighbor_signaled_session_down(
        local: State, received: State, diag: Diag) -> None:
    s = in_state(local, Clock())
    s.receive(remote(received))
    assert s.diag is diag
    assert s.status()["diagnostic"] == "Neighbor Signaled Session Down"


@pytest.mark.parametrize(("packet", "reason"), [
    (remote(State.UP, version=2), "bad_version"),
    (remote(State.UP, flags="A"), "authentication"),
    (remote(State.UP, mult=0), "zero_multiplier"),
    (remote(State.UP, flags="M"), "multipoint"),
    (remote(State.UP, mine=0), "zero_my_discriminator"),
    (remote(State.UP, your=0x9999), "wrong_your_discriminator"),
    (remote(State.UP, your=0), "zero_your_discriminator"),
    (remote(State.INIT, your=0), "zero_your_discriminator"),
    (remote(State.UP)[:20], "too_short"),
    (remote(State.UP)[:3] + b"\x30" + remote(State.UP)[4:], "bad_length"),  # length 48 > 24
    (remote(State.UP)[:3] + b"\x10" + remote(State.UP)[4:], "bad_length"),  # length 16 < 24
])
def test_reception_checks_of_section_6_8_6_discard_and_change_nothing(packet: bytes,
                                                                      reason: str) -> None:
    s = in_state(State.INIT, Clock())
    before = (s.state, s.remote_disc, s.detect_at)
    assert s.receive(packet) == reason
    assert (s.state, s.remote_disc, s.detect_at) == before
    assert s.discarded == {reason: 1}


def test_a_packet_whose_ttl_is_not_255_is_discarded() -> None:
    s = in_state(State.DOWN, Clock())
    assert s.receive(remote(State.DOWN, your=0), ttl=254) == "ttl_not_255"
    assert s.state is State.DOWN


def test_detection_time_passes_and_the_session_goes_down_with_diagnostic_1() -> None:
    clock = Clock()
    s = in_state(State.UP, clock)
    # remote mult 3 x max(our min_rx 100, remote min_tx 100): 300 ms (6.8.4)
    assert s.detection_time() == 300
    clock.now += 0.299
    s.run()
    assert s.state is State.UP
    clock.now += 0.002
    s.run()
    assert (s.state, s.diag) == (State.DOWN, Diag.EXPIRED)
    assert s.status() == {"state": "down", "forwarding": "false",
                          "diagnostic": "Control Detection Time Expired",
                          "remote_state": "down", "remote_diagnostic": "No Diagnostic",
                          "flap_count": "2"}


def test_detection_time_uses_the_slower_of_our_rx_and_their_tx_times_their_multiplier() -> None:
    clock = Clock()
    s = session(clock, min_tx=100, min_rx=100)
    s.receive(remote(State.INIT, tx_us=250_000, mult=5))
    assert s.detection_time() == 5 * 250


def test_not_up_sends_at_most_once_a_second_and_up_at_the_negotiated_rate() -> None:
    clock = Clock()
    s = session(clock, min_tx=100, min_rx=100)
    assert s.due()  # the first packet goes at once
    first = s.next_control()
    assert first.min_tx == 1_000_000  # 6.8.3: not Up, at least one second
    assert 0.75 - 1e-9 <= s.next_tx - clock.now <= 1.0 + 1e-9  # less 0-25 % jitter (6.8.7)
    s.receive(remote(State.INIT, rx_us=300_000))
    assert s.state is State.UP
    clock.now = s.next_tx
    assert s.due()
    up = s.next_control()
    assert up.min_tx == 100_000 and up.state == State.UP
    # the remote asks for no more than one per 300 ms: max(our 100, their 300) less jitter
    assert 0.225 - 1e-9 <= s.next_tx - clock.now <= 0.3 + 1e-9


def test_intervals_over_many_sends_stay_within_the_jitter_band() -> None:
    clock = Clock()
    s = in_state(State.UP, clock)
    gaps = []
    for _ in range(200):
        clock.now = s.next_tx
        last = clock.now
        s.next_control()
        gaps.append(s.next_tx - last)
    assert min(gaps) >= 0.075 - 1e-9 and max(gaps) <= 0.1 + 1e-9
    assert max(gaps) - min(gaps) > 0.01  # jitter is there


def test_multiplier_one_sends_at_most_90_percent_of_the_interval() -> None:
    clock = Clock()
    s = Session("x", BfdConfig(min_tx=100, min_rx=100, mult=1), MY_DISC, clock=clock)
    s.receive(remote(State.INIT))
    for _ in range(100):
        clock.now = s.next_tx
        s.next_control()
        assert 0.075 - 1e-9 <= s.next_tx - clock.now <= 0.09 + 1e-9


def test_a_remote_min_rx_of_zero_stops_periodic_packets() -> None:
    clock = Clock()
    s = session(clock)
    s.receive(remote(State.DOWN, your=0, rx_us=0))
    clock.now += 10
    assert not s.due()


def test_a_poll_is_answered_at_once_with_final() -> None:
    clock = Clock()
    s = in_state(State.UP, clock)
    s.next_control()
    s.receive(remote(State.UP, flags="P"))
    assert s.due() and s.wake_time() == 0.0
    answer = s.next_control()
    assert answer.final and not answer.poll
    assert not s.due()


def test_changing_min_tx_while_up_runs_a_poll_sequence() -> None:
    clock = Clock()
    s = in_state(State.UP, clock)
    s.reconfigure(BfdConfig(min_tx=500, min_rx=100))
    assert s.due()
    poll = s.next_control()
    assert poll.poll and poll.min_tx == 500_000
    assert s.min_tx == 100  # in force only once the remote answers (6.8.3)
    s.receive(remote(State.UP, flags="F"))
    assert s.min_tx == 500 and not s.flags & Flag.POLL
    assert s.next_control().min_tx == 500_000


def test_remote_path_down_diagnostic_keeps_the_session_up_but_not_forwarding() -> None:
    s = in_state(State.UP, Clock())
    assert s.forwarding
    s.receive(remote(State.UP, diag=Diag.CONCATENATED_PATH_DOWN))
    assert s.state is State.UP and not s.forwarding
    assert s.status()["remote_diagnostic"] == "Concatenated Path Down"


def test_admin_down_tells_the_peer_which_goes_down_at_once() -> None:
    clock = Clock()
    ours = in_state(State.UP, clock)
    peer = Session("peer", BfdConfig(min_tx=100, min_rx=100), REMOTE_DISC, clock=clock)
    # bring the peer up against us
    peer.receive(bfd.build(bfd.Control(state=State.DOWN, my_disc=MY_DISC)))
    peer.receive(bfd.build(bfd.Control(state=State.UP, my_disc=MY_DISC,
                                       your_disc=REMOTE_DISC)))
    assert peer.state is State.UP
    goodbye = ours.admin_down()
    assert (goodbye.state, goodbye.diag) == (State.ADMIN_DOWN, Diag.ADMIN_DOWN)
    peer.receive(bfd.build(goodbye))
    assert (peer.state, peer.diag) == (State.DOWN, Diag.NEIGHBOR_DOWN)


def test_two_sessions_bring_each_other_up_and_detect_a_cut_path() -> None:
    clock = Clock()
    a = Session("a", BfdConfig(min_tx=100, min_rx=100), 11, clock=clock)
    b = Session("b", BfdConfig(min_tx=100, min_rx=100), 22, clock=clock)
    connected = True
    up_since: float | None = None
    cut_at = 0.0
    for _ in range(10000):
        for me, other in ((a, b), (b, a)):
            me.run()
            if me.due():
                packet = bfd.build(me.next_control())
                if connected:
                    other.receive(packet)
        if a.state is State.UP and b.state is State.UP and up_since is None:
            up_since = clock.now
        # cut once both have sent at the Up rate (until then the remote's last packet still
        # announced the one-second rate of 6.8.3, and the detection time follows it)
        if connected and up_since is not None and clock.now - up_since > 1.5:
            connected = False
            cut_at = clock.now
        if not connected and a.state is State.DOWN and b.state is State.DOWN:
            break
        clock.now += 0.001
    assert a.diag is Diag.EXPIRED and b.diag is Diag.EXPIRED
    assert 0.2 <= clock.now - cut_at <= 0.301  # detection time 300 ms, last packet <= 100 ms


def test_cpath_down_is_our_diagnostic_whatever_happens() -> None:
    s = session(Clock(), cpath_down=True)
    assert s.next_control().diag == Diag.CONCATENATED_PATH_DOWN


def test_decay_lowers_the_asked_rate_on_an_idle_interface() -> None:
    clock = Clock()
    received = [0]
    s = Session("x", BfdConfig(min_tx=100, min_rx=100, decay_min_rx=1000), MY_DISC,
                clock=clock, rx_packets=lambda: received[0])
    s.receive(remote(State.INIT))
    assert s.state is State.UP
    for _ in range(25):  # 2.5 s of BFD only: the interface counted just those
        clock.now += 0.1
        received[0] += 1
        s.receive(remote(State.UP))
        s.run()
    assert s.in_decay
    poll = s.next_control()
    assert poll.poll and poll.min_rx == 1_000_000


def test_config_parses_open_vswitch_keys_and_refuses_bad_values() -> None:
    assert bfd_config.parse({}, "p") is None
    assert bfd_config.parse({"enable": "false", "min_tx": "5"}, "p") is None
    config = bfd_config.parse({"enable": "true"}, "p")
    assert config == BfdConfig(min_rx=1000, min_tx=100, mult=3)  # vswitch.xml's defaults
    config = bfd_config.parse({"enable": "true", "min_rx": "200", "min_tx": "50", "mult": "5",
                               "bfd_local_dst_mac": "00:23:20:00:00:02"}, "p")
    assert config is not None and (config.min_rx, config.min_tx, config.mult) == (200, 50, 5)
    assert config.local_dst_mac == "00:23:20:00:00:02"
    for bad, message in (({"enable": "yes"}, "not true or false"),
                         ({"enable": "true", "min_tx": "10O"}, "not a whole number"),
                         ({"enable": "true", "min_rx": "0"}, "outside 1-"),
                         ({"enable": "true", "mult": "256"}, "outside 1-255"),
                         ({"enable": "true", "min_rx": "500", "decay_min_rx": "100"},
                          "below bfd:min_rx"),
                         ({"enable": "true", "bfd_src_ip": "nope"}, "not an IPv4"),
                         ({"enable": "true", "color": "red"}, "unknown bfd key")):
        with pytest.raises(PortError, match=message):
            bfd_config.parse(bad, "port p")
