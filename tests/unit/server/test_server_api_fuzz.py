"""Nothing crashes: random and half-valid bodies, ids and query strings against every route.

An independent generator (hypothesis), not our schemas, makes the input; the property is the
API contract itself: never a 5xx, and every error is Neutron's
`{"NeutronError": {"type", "message", "detail"}}`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.controller import ADMIN_TOKEN, ServerProcess

FIELDS = {
    "network": ["name", "admin_state_up", "project_id", "tenant_id", "mtu", "description",
                "provider:network_type", "provider:segmentation_id",
                "provider:physical_network"],
    "subnet": ["network_id", "cidr", "ip_version", "gateway_ip", "allocation_pools", "name",
               "enable_dhcp", "dns_nameservers"],
    "port": ["network_id", "name", "mac_address", "fixed_ips", "binding:host_id", "status",
             "device_id", "device_owner", "admin_state_up"],
    "agent": ["host", "agent_type", "configurations", "admin_state_up", "description"],
    "project": ["id", "name", "description"],
    "token": ["project", "role"],
}  # fmt: skip
ALLOWED = {200, 201, 204, 400, 401, 403, 404, 405, 409, 410}

SAMPLES = ["10.0.0.0/24", "fa:16:3e:00:00:01", "vxlan", "10.0.0.5", "::1", "physnet1", "ACTIVE"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(SAMPLES)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def bodies(draw: st.DrawFn, resource: str, ids: dict[str, str]) -> Any:
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)  # anything at all
    known = FIELDS[resource]
    keys = draw(st.lists(st.sampled_from(known) | st.text(max_size=8), max_size=5, unique=True))
    inner = {}
    for key in keys:
        if key == "network_id" and draw(st.booleans()):
            inner[key] = ids["network"]
        elif key == "fixed_ips" and draw(st.booleans()):
            inner[key] = [{"subnet_id": ids["subnet"], "ip_address": draw(json_values)}]
        else:
            inner[key] = draw(json_values)
    return {resource: inner}


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": ADMIN_TOKEN},
                      timeout=10) as http:  # fmt: skip
        net = http.post("/v2.0/networks", json={"network": {"name": "fuzz"}}).json()["network"]
        sub = http.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "cidr": "10.77.0.0/24"}}).json()["subnet"]  # fmt: skip
        port = http.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}).json()["port"]
        agent = http.post("/v2.0/agents", json={"agent": {"host": "fz"}}).json()["agent"]
        ids = {"network": net["id"], "subnet": sub["id"], "port": port["id"],
               "agent": agent["id"], "project": "admin"}  # fmt: skip
        yield http, ids


def _check(response: httpx.Response) -> None:
    assert response.status_code in ALLOWED, (response.status_code, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"NeutronError"}
        assert isinstance(body["NeutronError"]["type"], str) and body["NeutronError"]["type"]
        assert isinstance(body["NeutronError"]["message"], str) and body["NeutronError"]["message"]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_no_request_makes_the_server_fail_or_answer_outside_the_contract(
    world: tuple[httpx.Client, dict[str, str]], data: st.DataObject
) -> None:
    http, ids = world
    resource = data.draw(st.sampled_from(sorted(FIELDS)))
    plural = f"/v2.0/{resource}s"
    method = data.draw(st.sampled_from(["POST", "PUT", "GET", "GET_LIST", "DELETE_FAKE"]))
    body = data.draw(bodies(resource, ids))
    target = ids.get(resource) if data.draw(st.booleans()) else data.draw(
        st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                                exclude_characters="/?#%\\"), min_size=1,
                max_size=12))  # fmt: skip
    if method == "POST":
        response = http.post(plural, json=body)
    elif method == "PUT":
        response = http.put(f"{plural}/{target}", json=body)
    elif method == "GET":
        response = http.get(f"{plural}/{target}", params={"fields": data.draw(st.text(max_size=8))})
    elif method == "GET_LIST":
        key = data.draw(
            st.sampled_from(
                [
                    *FIELDS[resource],
                    "fields",
                    "fixed_ips",
                    "x",
                    "limit",
                    "marker",
                    "sort_key",
                    "sort_dir",
                ]
            )
        )
        response = http.get(plural, params={key: data.draw(st.text(max_size=12))})
    else:
        response = http.delete(f"{plural}/not-{target}")
    _check(response)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(since=st.text(max_size=12), timeout=st.text(max_size=8), token=st.text(max_size=8))
def test_event_and_watch_parameters_never_break_the_contract(
    world: tuple[httpx.Client, dict[str, str]], since: str, timeout: str, token: str
) -> None:
    http, _ = world
    try:
        if float(timeout) > 0.3:
            timeout = "0.3"  # a valid long wait proves nothing more, it only costs time
    except ValueError:
        pass
    for path in ("/v2.0/events", "/v2.0/watch"):
        with http.stream("GET", path, params={"since": since, "timeout": timeout}) as response:
            if response.status_code == 200:
                continue  # a valid poll or stream; closing it ends it
            response.read()
            _check(response)
    # a header value cannot begin or end with whitespace (RFC 9110 5.5: it is not part of
    # the value), and httpx refuses to send one that does
    sendable = token.isprintable() and token.isascii() and token == token.strip()
    headers = {"X-Auth-Token": token} if sendable else {}
    anonymous = httpx.get(http.base_url.join("/v2.0/networks"), headers=headers)
    _check(anonymous)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_numbers_are_a_400_not_a_broken_response(
    world: tuple[httpx.Client, dict[str, str]], literal: bytes
) -> None:
    # Python's JSON reader accepts these literals; JSON (RFC 8259) does not, nor our writer
    http, _ = world
    body = b'{"agent": {"host": "nan-host", "configurations": {"x": ' + literal + b"}}}"
    response = http.post("/v2.0/agents", content=body,
                         headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 400
    _check(response)
