"""IPAM and MACs without HTTP: pools, validation, never the same address twice, exhaustion."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelnet.server import ipam, macs
from tunnelnet.server.errors import BadRequest, Conflict
from tunnelnet.store import SqliteStore


def _subnet(cidr: str, pools: list[tuple[str, str]], gateway: str | None = None) -> dict[str, Any]:
    net = ipaddress.ip_network(cidr)
    return {
        "id": "s1",
        "cidr": cidr,
        "ip_version": net.version,
        "gateway_ip": gateway,
        "allocation_pools": [{"start": a, "end": b} for a, b in pools],
    }


def test_usable_range_leaves_out_network_and_broadcast_of_ipv4() -> None:
    first, last = ipam.usable_range(ipaddress.ip_network("10.0.0.0/24"))
    assert (str(ipaddress.ip_address(first)), str(ipaddress.ip_address(last))) == (
        "10.0.0.1", "10.0.0.254"
    )  # fmt: skip
    # RFC 3021: a /31 has no network or broadcast address
    first, last = ipam.usable_range(ipaddress.ip_network("10.0.0.0/31"))
    assert last - first == 1


def test_usable_range_of_ipv6_leaves_out_only_the_subnet_router_anycast() -> None:
    net = ipaddress.ip_network("2001:db8::/64")
    first, last = ipam.usable_range(net)
    assert first == int(net.network_address) + 1
    assert last == int(net.broadcast_address)


def test_cidr_with_host_bits_is_refused_with_a_suggestion() -> None:
    with pytest.raises(BadRequest, match=r"did you mean 10\.0\.0\.0/24"):
        ipam.parse_cidr("10.0.0.5/24")
    with pytest.raises(BadRequest, match="'banana'"):
        ipam.parse_cidr("banana")


@pytest.mark.parametrize(
    ("pools", "gateway", "needle"),
    [
        ([("10.0.0.10", "10.0.1.5")], None, "not in 10.0.0.0/24"),
        ([("10.0.0.20", "10.0.0.10")], None, "is after end"),
        ([("10.0.0.10", "10.0.0.20"), ("10.0.0.15", "10.0.0.30")], None, "overlap"),
        ([("10.0.0.1", "10.0.0.20")], "10.0.0.1", "gateway_ip 10.0.0.1 is inside"),
        ([("2001:db8::1", "2001:db8::5")], None, "not in 10.0.0.0/24"),
    ],
)
def test_bad_allocation_pools_are_refused_naming_the_problem(
    pools: list[tuple[str, str]], gateway: str | None, needle: str
) -> None:
    net = ipaddress.ip_network("10.0.0.0/24")
    gw = ipaddress.ip_address(gateway) if gateway else None
    with pytest.raises(BadRequest, match=needle):
        ipam.check_pools(net, [{"start": a, "end": b} for a, b in pools], gw)


def test_addresses_come_in_order_and_a_released_one_waits_for_the_wrap() -> None:
    store = SqliteStore(":memory:")
    subnet = _subnet("10.0.0.0/29", [("10.0.0.2", "10.0.0.4")], "10.0.0.1")
    with store.write() as txn:
        got = [ipam.allocate(txn, subnet, f"p{i}") for i in range(3)]
        assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
        assert ipam.allocate(txn, subnet, "p3") is None  # full
        ipam.release(txn, "s1", "10.0.0.3")
        assert ipam.allocate(txn, subnet, "p4") == "10.0.0.3"
    store.close()


def test_a_requested_address_must_be_free_inside_the_subnet_and_not_the_gateway() -> None:
    store = SqliteStore(":memory:")
    subnet = _subnet("10.0.0.0/24", [("10.0.0.2", "10.0.0.254")], "10.0.0.1")
    with store.write() as txn:
        assert ipam.claim_address(txn, subnet, "10.0.0.77", "a") == "10.0.0.77"
        with pytest.raises(Conflict) as taken:
            ipam.claim_address(txn, subnet, "10.0.0.77", "b")
        with pytest.raises(BadRequest, match="not in subnet"):
            ipam.claim_address(txn, subnet, "10.0.1.1", "b")
        with pytest.raises(BadRequest, match="broadcast"):
            ipam.claim_address(txn, subnet, "10.0.0.255", "b")
        with pytest.raises(Conflict, match="gateway"):
            ipam.claim_address(txn, subnet, "10.0.0.1", "b")
    assert taken.value.error_type == "IpAddressAlreadyAllocated"
    store.close()


plans = st.lists(st.tuples(st.sampled_from(["alloc", "alloc", "free", "ask"]),
                           st.integers(0, 40)), max_size=80)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(plans)
def test_no_address_is_ever_held_twice_and_none_falls_outside_the_pools(
    plan: list[tuple[str, int]],
) -> None:
    # an independent oracle: the pool's addresses enumerated by ipaddress
    subnet = _subnet("10.9.0.0/27", [("10.9.0.5", "10.9.0.9"), ("10.9.0.20", "10.9.0.24")])
    pool = {
        str(ipaddress.ip_address(a))
        for a in range(
            int(ipaddress.ip_address("10.9.0.5")), int(ipaddress.ip_address("10.9.0.9")) + 1
        )
    }
    pool |= {f"10.9.0.{i}" for i in range(20, 25)}
    store = SqliteStore(":memory:")
    held: dict[str, str] = {}
    try:
        for n, (op, pick) in enumerate(plan):
            with store.write() as txn:
                if op == "alloc":
                    got = ipam.allocate(txn, subnet, f"p{n}")
                    in_pools = {a for a in held.values() if a in pool}
                    if got is None:
                        assert in_pools == pool
                        continue
                    assert got in pool
                    assert got not in held.values()
                    held[f"p{n}"] = got
                elif op == "ask":
                    wanted = f"10.9.0.{1 + pick % 30}"
                    try:
                        held[f"p{n}"] = ipam.claim_address(txn, subnet, wanted, f"p{n}")
                    except Conflict:
                        assert wanted in held.values()
                    else:
                        assert list(held.values()).count(wanted) == 1
                elif held:
                    owner = sorted(held)[pick % len(held)]
                    ipam.release(txn, "s1", held.pop(owner))
    finally:
        store.close()


def test_ipv6_allocation_in_a_huge_pool_is_immediate() -> None:
    store = SqliteStore(":memory:")
    subnet = _subnet("2001:db8::/64", [("2001:db8::2", "2001:db8::ffff:ffff:ffff:ffff")])
    with store.write() as txn:
        got = {ipam.allocate(txn, subnet, f"p{i}") for i in range(50)}
    assert len(got) == 50
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("2001:db8::/64") for a in got)
    store.close()


def test_generated_macs_carry_the_prefix_are_unicast_and_unique() -> None:
    store = SqliteStore(":memory:")
    with store.write() as txn:
        got = [macs.generate(txn, "net", "fa:16:3e", f"p{i}") for i in range(300)]
    assert len(set(got)) == 300
    for mac in got:
        assert mac.startswith("fa:16:3e:")
        assert int(mac[:2], 16) & 1 == 0
    store.close()


def test_a_full_mac_space_is_a_409_and_every_address_was_used_first() -> None:
    store = SqliteStore(":memory:")
    with store.write() as txn:
        got = {macs.generate(txn, "net", "02:00:00:00:01", f"p{i}") for i in range(256)}
        with pytest.raises(Conflict) as err:
            macs.generate(txn, "net", "02:00:00:00:01", "late")
    assert len(got) == 256
    assert err.value.error_type == "MacAddressGenerationFailure"
    store.close()


def test_the_same_mac_is_fine_on_another_network_but_not_twice_on_one() -> None:
    store = SqliteStore(":memory:")
    with store.write() as txn:
        macs.claim(txn, "net-a", "FA-16-3E-00-00-01", "p1")
        macs.claim(txn, "net-b", "fa:16:3e:00:00:01", "p2")
        with pytest.raises(Conflict) as err:
            macs.claim(txn, "net-a", "fa:16:3e:00:00:01", "p3")
    assert err.value.error_type == "MacAddressInUse"
    store.close()


@pytest.mark.parametrize(
    ("text", "needle"),
    [("01:00:5e:00:00:01", "multicast"), ("00:00:00:00:00:00", "all-zero"),
     ("fa:16:3e:00:00", "not a MAC"), ("fa:16:3e:00:00:0g", "not a MAC"),
     ("fa:16-3e:00:00:01", "not a MAC")],
)  # fmt: skip
def test_bad_macs_are_refused_naming_the_field(text: str, needle: str) -> None:
    with pytest.raises(BadRequest, match=needle) as err:
        macs.normalise(text)
    assert "mac_address" in err.value.message
