"""The moved VM's self-announce is QEMU's: RARP frames (RFC 903) judged by scapy's dissector,
at QEMU's default intervals (its ``announce-*`` migration parameters)."""

from __future__ import annotations

from scapy.layers.l2 import ARP, Ether

from tunnelnet.lab.announce import gaps_ms, rarp_frame


def test_the_announce_frame_is_a_broadcast_rarp_reverse_request_for_the_vms_own_mac() -> None:
    mac = "fa:16:3e:12:34:56"
    frame = rarp_frame(mac)
    assert len(frame) == 60  # the Ethernet minimum without FCS, as QEMU pads it
    eth = Ether(frame)
    assert (eth.dst, eth.src, eth.type) == ("ff:ff:ff:ff:ff:ff", mac, 0x8035)
    rarp = ARP(bytes(eth.payload))
    assert (rarp.hwtype, rarp.ptype, rarp.hwlen, rarp.plen) == (1, 0x0800, 6, 4)
    assert rarp.op == 3  # RFC 903: "request reverse"
    assert (rarp.hwsrc, rarp.psrc, rarp.hwdst, rarp.pdst) == (mac, "0.0.0.0", mac, "0.0.0.0")


def test_the_rounds_follow_qemus_defaults_50ms_then_100ms_more_each_time() -> None:
    # initial 50 ms, step 100 ms, max 550 ms, 5 rounds: four pauses between five frames
    assert gaps_ms() == [50, 150, 250, 350]
    assert gaps_ms(8)[-1] == 550  # capped at announce-max
