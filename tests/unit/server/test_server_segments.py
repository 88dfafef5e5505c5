"""Segment allocation without HTTP: ranges, requested ids, exhaustion, physical networks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelnet.server import segments
from tunnelnet.server.config import ServerConfig
from tunnelnet.server.errors import BadRequest, Conflict
from tunnelnet.store import SqliteStore

CONFIG = ServerConfig(
    vni_ranges=((10, 14), (100, 101)),
    gre_id_ranges=((1, 3),),
    network_vlan_ranges={"physnet1": ((100, 102),), "physnet2": ((100, 100),), "bare": ()},
    flat_networks=("flatnet",),
)


@pytest.fixture
def store() -> Iterator[SqliteStore]:
    s = SqliteStore(":memory:")
    yield s
    s.close()


def test_tenant_networks_get_the_lowest_free_vni_of_the_ranges(store: SqliteStore) -> None:
    with store.write() as txn:
        got = [segments.allocate(txn, CONFIG, "vxlan", None, None, f"n{i}") for i in range(7)]
    assert [s.segmentation_id for s in got] == [10, 11, 12, 13, 14, 100, 101]


def test_exhausted_range_is_a_409_naming_the_ranges(store: SqliteStore) -> None:
    with store.write() as txn:
        for i in range(3):
            segments.allocate(txn, CONFIG, "gre", None, None, f"n{i}")
        with pytest.raises(Conflict, match="1:3") as err:
            segments.allocate(txn, CONFIG, "gre", None, None, "late")
    assert err.value.error_type == "NoNetworkAvailable"
    assert err.value.status == 409


@pytest.mark.parametrize(
    ("network_type", "value"),
    [("vxlan", 0), ("vxlan", 2**24), ("gre", 2**32), ("vlan", 0), ("vlan", 4095)],
)
def test_segment_outside_the_types_space_is_a_400_naming_the_field(
    store: SqliteStore, network_type: str, value: int
) -> None:
    physnet = "physnet1" if network_type == "vlan" else None
    with store.write() as txn, pytest.raises(BadRequest, match="provider:segmentation_id") as e:
        segments.allocate(txn, CONFIG, network_type, physnet, value, "n")
    assert e.value.status == 400


def test_admin_may_pick_an_id_outside_the_tenant_ranges_but_not_a_taken_one(
    store: SqliteStore,
) -> None:
    with store.write() as txn:
        assert segments.allocate(txn, CONFIG, "vxlan", None, 5000, "a").segmentation_id == 5000
        with pytest.raises(Conflict) as err:
            segments.allocate(txn, CONFIG, "vxlan", None, 5000, "b")
    assert err.value.error_type == "SegmentationIdInUse"


def test_vlan_ids_are_per_physical_network(store: SqliteStore) -> None:
    with store.write() as txn:
        a = segments.allocate(txn, CONFIG, "vlan", "physnet1", 100, "a")
        b = segments.allocate(txn, CONFIG, "vlan", "physnet2", 100, "b")
        with pytest.raises(Conflict):
            segments.allocate(txn, CONFIG, "vlan", "physnet2", None, "c")  # its one id is gone
    assert (a.physical_network, b.physical_network) == ("physnet1", "physnet2")


def test_vlan_on_an_unknown_physical_network_is_refused_with_its_name(store: SqliteStore) -> None:
    with store.write() as txn, pytest.raises(BadRequest, match="physnet9"):
        segments.allocate(txn, CONFIG, "vlan", "physnet9", None, "a")


def test_a_physical_network_carries_one_flat_network(store: SqliteStore) -> None:
    with store.write() as txn:
        segments.allocate(txn, CONFIG, "flat", "flatnet", None, "a")
        with pytest.raises(Conflict) as err:
            segments.allocate(txn, CONFIG, "flat", "flatnet", None, "b")
        with pytest.raises(BadRequest, match="other"):
            segments.allocate(txn, CONFIG, "flat", "other", None, "c")
    assert err.value.error_type == "FlatNetworkInUse"


def test_released_segment_is_handed_out_again(store: SqliteStore) -> None:
    with store.write() as txn:
        first = segments.allocate(txn, CONFIG, "gre", None, None, "a")
        segments.release(txn, first)
        again = segments.allocate(txn, CONFIG, "gre", None, None, "b")
    assert again.segmentation_id == first.segmentation_id


def test_mtu_subtracts_the_encapsulation_overhead() -> None:
    # Neutron: VXLAN 50 and GRE 42 bytes over IPv4; IPv6 headers are 20 bytes longer
    assert segments.network_mtu(ServerConfig(), "vxlan") == 1450
    assert segments.network_mtu(ServerConfig(), "gre") == 1458
    assert segments.network_mtu(ServerConfig(), "vlan") == 1500
    assert segments.network_mtu(ServerConfig(underlay_mtu=9000), "vxlan") == 8950
    assert segments.network_mtu(ServerConfig(underlay_ip_version=6), "vxlan") == 1430


ops = st.lists(st.tuples(st.sampled_from(["alloc", "free"]), st.integers(0, 9)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_no_vni_is_ever_held_twice_and_exhaustion_comes_only_when_full(
    plan: list[tuple[str, int]],
) -> None:
    space = {v for lo, hi in CONFIG.vni_ranges for v in range(lo, hi + 1)}
    store = SqliteStore(":memory:")
    held: dict[str, int] = {}
    try:
        for n, (op, pick) in enumerate(plan):
            with store.write() as txn:
                if op == "alloc":
                    try:
                        seg = segments.allocate(txn, CONFIG, "vxlan", None, None, f"n{n}")
                    except Conflict:
                        assert set(held.values()) == space  # only when really full
                        continue
                    assert seg.segmentation_id in space
                    assert seg.segmentation_id not in held.values()
                    held[f"n{n}"] = seg.segmentation_id  # type: ignore[assignment]
                elif held:
                    owner = sorted(held)[pick % len(held)]
                    segments.release(txn, segments.Segment("vxlan", None, held.pop(owner)))
    finally:
        store.close()
