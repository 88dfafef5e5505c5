"""What an etcd member without a leader answers through the gateway becomes a store outage
whose cause an API client may read (etcd's own words for it: "etcdserver: no leader", gRPC
code 14 Unavailable, which the gateway answers as HTTP 503)."""

from __future__ import annotations

import httpx
import pytest

from tunnelnet.store.etcd_gateway import NO_LEADER, EtcdUnavailable, Gateway


def _gateway(answer: httpx.Response, seen: list[httpx.Request]) -> Gateway:
    gateway = Gateway(["127.0.0.1:2379"])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    gateway._clients = [httpx.Client(base_url="http://127.0.0.1:2379/v3",
                                     transport=httpx.MockTransport(handler))]
    return gateway


def test_a_member_without_leader_is_unavailable_with_the_cause_named() -> None:
    seen: list[httpx.Request] = []
    no_leader = httpx.Response(503, json={"error": "etcdserver: no leader",
                                          "message": "etcdserver: no leader", "code": 14})
    gateway = _gateway(no_leader, seen)
    with pytest.raises(EtcdUnavailable) as caught:
        gateway.range(b"/x")
    assert caught.value.cause == NO_LEADER and "quorum" in NO_LEADER


def test_every_call_asks_etcd_to_refuse_when_it_has_no_leader() -> None:
    # without this metadata a member without quorum holds a write for its request timeout
    seen: list[httpx.Request] = []
    gateway = _gateway(httpx.Response(200, json={"header": {"revision": "1"}}), seen)
    gateway.range(b"/x")
    assert seen[0].headers["grpc-metadata-hasleader"] == "true"


@pytest.mark.parametrize(("status", "detail"), [
    (503, "etcdserver: request timed out"),
    (500, "context deadline exceeded"),  # the gateway's own words, as gRPC Unknown
])
def test_a_write_that_timed_out_waiting_for_quorum_has_an_unknown_outcome(
        status: int, detail: str) -> None:
    seen: list[httpx.Request] = []
    gateway = _gateway(httpx.Response(status, json={"error": detail}), seen)
    with pytest.raises(EtcdUnavailable) as caught:
        gateway.txn([], [])
    assert caught.value.unknown and caught.value.cause != NO_LEADER
