"""A MAC sighting that arrives late (older than what the table already saw): the kernel fast
path folds the packets it forwarded as of their last use, after walks that came later
(datapath/kernel_mirror.py). The table must end as if every sighting had come in time order,
which is what the same sightings fed in that order give (the oracle here)."""

from __future__ import annotations

from tunnelnet.switch.normal import MacTable

A, B, C = 0xA, 0xB, 0xC


def _fed(sightings: list[tuple[int, int, float]]) -> MacTable:
    table = MacTable(aging=300.0)
    for mac, port, seen in sightings:
        table.learn(0, mac, port, seen)
    return table


def test_a_late_sighting_on_the_old_port_does_not_move_the_mac_back() -> None:
    # A on port 1 at t=10 (the kernel's, folded late), then on port 2 at t=11 (a walk)
    late = _fed([(A, 1, 5.0), (A, 2, 11.0), (A, 1, 10.0)])
    in_order = _fed([(A, 1, 5.0), (A, 1, 10.0), (A, 2, 11.0)])
    assert late.entries() == in_order.entries() == [(0, A, 2, 11.0)]
    assert late.lookup(0, A, 12.0) == 2


def test_a_late_sighting_takes_its_place_in_the_last_seen_order_and_ages_out_in_time() -> None:
    # B and C seen by walks at 20 and 30; A's late sighting at 25 goes between them
    late = _fed([(A, 1, 5.0), (B, 2, 20.0), (C, 3, 30.0), (A, 1, 25.0)])
    in_order = _fed([(A, 1, 5.0), (B, 2, 20.0), (A, 1, 25.0), (C, 3, 30.0)])
    assert late.entries() == in_order.entries()
    assert [mac for _, mac, _, _ in late.entries()] == [B, A, C]
    # at 326 A (seen 25) is as old as aging allows, C (seen 30) not yet: expire() takes the
    # prefix of the last-seen order, so A must not hide behind C
    assert late.expire(326.0) == in_order.expire(326.0) == 2
    assert [mac for _, mac, _, _ in late.entries()] == [C]
