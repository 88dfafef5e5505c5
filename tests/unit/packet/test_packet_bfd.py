"""BFD control packets and their frame, judged by scapy's BFD layer (scapy.contrib.bfd) and by
literal bytes written from RFC 5880 section 4.1's figure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.contrib.bfd import BFD
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tunnelnet.packet import bfd
from tunnelnet.packet.bfd import Control, Diag, Flag, State
from tunnelnet.packet.errors import PacketError

# RFC 5880 4.1: version 1, diag 3, state Up (3), P set, mult 3, length 24, my 0x11223344,
# your 0x55667788, min TX 100 ms, min RX 300 ms, echo 0 (in microseconds)
VECTOR = bytes.fromhex("23e3 0318 11223344 55667788 000186a0 000493e0 00000000")


def test_vector_from_the_rfc_figure_parses_field_by_field() -> None:
    control, end = bfd.parse(VECTOR)
    assert end == 24
    assert (control.version, control.diag, control.state) == (1, Diag.NEIGHBOR_DOWN, State.UP)
    assert control.poll and not control.final
    assert (control.detect_mult, control.length) == (3, 24)
    assert (control.my_disc, control.your_disc) == (0x11223344, 0x55667788)
    assert (control.min_tx, control.min_rx, control.min_echo_rx) == (100_000, 300_000, 0)
    assert bfd.build(control) == VECTOR


def test_scapy_reads_what_we_build_and_we_read_what_scapy_builds() -> None:
    ours = Control(state=State.INIT, my_disc=7, your_disc=9, diag=Diag.EXPIRED,
                   flags=Flag.FINAL, detect_mult=5, min_tx=250_000, min_rx=500_000)
    theirs = BFD(bfd.build(ours))
    assert (theirs.version, int(theirs.diag), int(theirs.sta)) == (1, 1, 2)
    assert int(theirs.flags) == Flag.FINAL
    assert (theirs.detect_mult, theirs.len) == (5, 24)
    assert (theirs.my_discriminator, theirs.your_discriminator) == (7, 9)
    assert (theirs.min_tx_interval, theirs.min_rx_interval, theirs.echo_rx_interval) == \
        (250_000, 500_000, 0)
    built = bytes(BFD(version=1, diag=6, sta=0, flags="P", detect_mult=1, my_discriminator=1,
                      your_discriminator=0, min_tx_interval=1, min_rx_interval=2,
                      echo_rx_interval=3))
    control, _ = bfd.parse(built)
    assert (control.diag, control.state, control.flags) == (6, State.ADMIN_DOWN, Flag.POLL)
    assert (control.min_tx, control.min_rx, control.min_echo_rx) == (1, 2, 3)


@given(state=st.integers(0, 3), diag=st.integers(0, 31), flags=st.integers(0, 0x1F),
       mult=st.integers(0, 255), mine=st.integers(0, 2**32 - 1),
       yours=st.integers(0, 2**32 - 1), tx=st.integers(0, 2**32 - 1),
       rx=st.integers(0, 2**32 - 1))
def test_round_trip(state: int, diag: int, flags: int, mult: int, mine: int, yours: int,
                    tx: int, rx: int) -> None:
    control = Control(state=state, my_disc=mine, your_disc=yours, diag=diag, flags=flags,
                      detect_mult=mult, min_tx=tx, min_rx=rx)
    assert bfd.parse(bfd.build(control))[0] == control
    assert bytes(BFD(bfd.build(control))) == bfd.build(control)


def test_poll_and_final_together_are_refused_and_short_packets_too() -> None:
    with pytest.raises(PacketError, match="Poll and Final"):
        bfd.build(Control(state=State.UP, my_disc=1, flags=Flag.POLL | Flag.FINAL))
    with pytest.raises(PacketError, match="BFD control packet"):
        bfd.parse(VECTOR[:23])


def test_frame_is_what_open_vswitch_sends_in_a_tunnel() -> None:
    envelope = bfd.Envelope(eth_src=bytes.fromhex("020000000001"),
                            eth_dst=bytes.fromhex("002320000001"), udp_src=49153)
    frame = bfd.frame(envelope, Control(state=State.DOWN, my_disc=42))
    assert len(frame) == bfd.FRAME_LENGTH
    packet = Ether(frame)
    assert packet.dst == "00:23:20:00:00:01" and packet.src == "02:00:00:00:00:01"
    ip = packet[IP]
    assert (ip.src, ip.dst, ip.ttl, ip.tos, ip.flags.value, ip.frag) == \
        ("169.254.1.1", "169.254.1.0", 255, 0xC0, 0, 0)
    ours = ip.chksum
    rebuilt = IP(bytes(ip))
    del rebuilt.chksum
    assert IP(bytes(rebuilt)).chksum == ours  # scapy computes the same header checksum
    udp = packet[UDP]
    assert (udp.sport, udp.dport, udp.len, udp.chksum) == (49153, 3784, 32, 0)
    assert packet[BFD].my_discriminator == 42 and int(packet[BFD].sta) == State.DOWN


def test_recognize_takes_control_packets_and_nothing_else() -> None:
    envelope = bfd.Envelope(eth_src=b"\x02" * 6, eth_dst=b"\x00\x23\x20\x00\x00\x01")
    frame = bfd.frame(envelope, Control(state=State.UP, my_disc=1))
    seen = bfd.recognize(frame)
    assert seen is not None
    assert seen.ttl == 255 and seen.ip_dst == bytes([169, 254, 1, 0])
    assert bfd.parse(seen.payload)[0].my_disc == 1
    other_port = bytes(Ether() / IP() / UDP(dport=3785) / (b"x" * 24))
    later_fragment = bytes(Ether() / IP(frag=3) / UDP(dport=3784) / (b"x" * 24))
    tcp = bytes(Ether() / IP(proto=6) / (b"\x00" * 40))
    assert bfd.recognize(other_port) is None
    assert bfd.recognize(later_fragment) is None
    assert bfd.recognize(tcp) is None
    assert bfd.recognize(frame[:40]) is None


def test_envelope_source_port_must_be_in_the_rfc_5881_range() -> None:
    with pytest.raises(PacketError, match="49152-65535"):
        bfd.Envelope(eth_src=b"\x02" * 6, eth_dst=b"\x02" * 6, udp_src=3784)
