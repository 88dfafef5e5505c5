"""CRUD of every resource through the real HTTP server, filters, fields, and error shapes."""

from __future__ import annotations

import httpx
import pytest

from support.controller import ServerProcess
from tunnelnet.client import Client, ClientError, ConflictError, NotFoundError


def _raw(server: ServerProcess, method: str, path: str, token: str | None = "test-admin-token",
         content: bytes | None = None, json: object = None) -> httpx.Response:  # fmt: skip
    headers = {"X-Auth-Token": token} if token else {}
    if content is not None:
        headers["Content-Type"] = "application/json"
    return httpx.request(method, server.url + path, headers=headers, timeout=10,
                         content=content, json=json)  # fmt: skip


def _error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"NeutronError"}
    assert set(body["NeutronError"]) == {"type", "message", "detail"}
    return body["NeutronError"]  # type: ignore[no-any-return]


def test_network_create_show_update_list_delete(tenant_a: Client) -> None:
    net = tenant_a.create("network", name="blue")
    assert net["status"] == "ACTIVE"
    assert net["provider:network_type"] == "vxlan"
    assert net["mtu"] == 1450  # underlay 1500 - VXLAN over IPv4 50
    assert net["project_id"] == net["tenant_id"]
    assert tenant_a.show("network", net["id"])["name"] == "blue"
    updated = tenant_a.update("network", net["id"], name="green", admin_state_up=False)
    assert (updated["name"], updated["admin_state_up"]) == ("green", False)
    assert updated["revision_number"] == net["revision_number"] + 1
    assert [n["id"] for n in tenant_a.list("network")] == [net["id"]]
    tenant_a.delete("network", net["id"])
    with pytest.raises(NotFoundError):
        tenant_a.show("network", net["id"])


def test_subnet_defaults_gateway_and_pool_and_appears_on_its_network(tenant_a: Client) -> None:
    net = tenant_a.create("network", name="n")
    sub = tenant_a.create("subnet", network_id=net["id"], cidr="192.168.7.0/24")
    assert sub["gateway_ip"] == "192.168.7.1"
    assert sub["allocation_pools"] == [{"start": "192.168.7.2", "end": "192.168.7.254"}]
    assert sub["ip_version"] == 4
    assert tenant_a.show("network", net["id"])["subnets"] == [sub["id"]]
    v6 = tenant_a.create("subnet", network_id=net["id"], cidr="2001:db8:1::/64", gateway_ip=None)
    assert v6["gateway_ip"] is None
    assert v6["allocation_pools"] == [
        # RFC 5952 4.2.2: "::" never stands for a single 16-bit zero field
        {"start": "2001:db8:1::1", "end": "2001:db8:1:0:ffff:ffff:ffff:ffff"}
    ]
    renamed = tenant_a.update("subnet", sub["id"], name="lan")
    assert renamed["name"] == "lan"
    tenant_a.delete("subnet", v6["id"])
    assert tenant_a.show("network", net["id"])["subnets"] == [sub["id"]]


def test_port_gets_a_mac_and_one_address_per_ip_version(tenant_a: Client) -> None:
    net = tenant_a.create("network", name="n")
    v4 = tenant_a.create("subnet", network_id=net["id"], cidr="10.1.0.0/24")
    v6 = tenant_a.create("subnet", network_id=net["id"], cidr="fd00:1::/64")
    port = tenant_a.create("port", network_id=net["id"], name="vm1", device_id="vm-1")
    assert port["status"] == "DOWN"
    assert port["mac_address"].startswith("fa:16:3e:")
    assert {ip["subnet_id"] for ip in port["fixed_ips"]} == {v4["id"], v6["id"]}
    assert {"subnet_id": v4["id"], "ip_address": "10.1.0.2"} in port["fixed_ips"]
    # a chosen address, then moving it: the old one is released
    fixed = tenant_a.create("port", network_id=net["id"],
                            fixed_ips=[{"ip_address": "10.1.0.50"}])  # fmt: skip
    assert fixed["fixed_ips"] == [{"subnet_id": v4["id"], "ip_address": "10.1.0.50"}]
    moved = tenant_a.update("port", fixed["id"], fixed_ips=[{"ip_address": "10.1.0.51"}])
    assert moved["fixed_ips"] == [{"subnet_id": v4["id"], "ip_address": "10.1.0.51"}]
    again = tenant_a.create("port", network_id=net["id"], fixed_ips=[{"ip_address": "10.1.0.50"}])
    assert again["fixed_ips"][0]["ip_address"] == "10.1.0.50"
    with pytest.raises(ConflictError) as err:
        tenant_a.create("port", network_id=net["id"], fixed_ips=[{"ip_address": "10.1.0.51"}])
    assert err.value.error_type == "IpAddressAlreadyAllocated"
    for p in (port, fixed, again):
        tenant_a.delete("port", p["id"])
    assert tenant_a.list("port", network_id=net["id"]) == []


def test_filters_by_field_and_fields_selection(tenant_a: Client, server: ServerProcess) -> None:
    net = tenant_a.create("network", name="filtered")
    tenant_a.create("subnet", network_id=net["id"], cidr="10.2.0.0/24")
    p1 = tenant_a.create("port", network_id=net["id"], name="one", admin_state_up=False)
    p2 = tenant_a.create("port", network_id=net["id"], name="two")
    assert [p["id"] for p in tenant_a.list("port", name="two")] == [p2["id"]]
    assert [p["id"] for p in tenant_a.list("port", admin_state_up=False)] == [p1["id"]]
    assert {p["id"] for p in tenant_a.list("port", name=["one", "two"])} == {p1["id"], p2["id"]}
    ip = p2["fixed_ips"][0]["ip_address"]
    assert [p["id"] for p in tenant_a.list("port", fixed_ips=f"ip_address={ip}")] == [p2["id"]]
    only = tenant_a.list("port", fields=["id", "mac_address"], network_id=net["id"])
    assert all(set(p) == {"id", "mac_address"} for p in only)
    with pytest.raises(ClientError, match="unknown port filter") as err:
        tenant_a.list("port", colour="red")
    assert err.value.status == 400


def test_project_resource_lists_only_what_the_caller_may_see(
    admin: Client, tenant_a: Client
) -> None:
    mine = tenant_a.list("project")
    assert len(mine) == 1
    created = admin.create("project", name="acme", description="a customer")
    assert created["id"] == "acme"
    assert any(p["id"] == "acme" for p in admin.list("project"))
    with pytest.raises(ConflictError):
        admin.create("project", name="acme")
    with pytest.raises(ClientError) as err:
        tenant_a.create("project", name="sneaky")
    assert err.value.status == 403
    admin.delete("project", "acme")


@pytest.mark.parametrize(
    ("body", "status", "error_type", "needle"),
    [
        ({"subnet": {"network_id": "NET", "cidr": "10.0.0.300/24"}}, 400, "InvalidInput", "cidr"),
        ({"subnet": {"network_id": "NET", "cidr": "10.0.0.1/24"}}, 400, "InvalidInput",
         "did you mean 10.0.0.0/24"),
        ({"port": {"network_id": "NET", "mac_address": "fa:16:3e:zz:00:01"}}, 400,
         "InvalidInput", "mac_address"),
        ({"network": {"provider:network_type": "token-ring"}}, 400, "InvalidInput",
         "provider:network_type"),
        ({"network": {"provider:network_type": "vxlan", "provider:segmentation_id": 16777216}},
         400, "InvalidInput", "provider:segmentation_id"),
        # "12" is converted as Neutron converts it; text that is no number is not
        ({"network": {"provider:segmentation_id": "twelve"}}, 400, "InvalidInput",
         "provider:segmentation_id"),
        ({"network": {"name": "x", "colour": "red"}}, 400, "InvalidInput", "colour"),
        ({"networks": {}}, 400, "InvalidInput", "network"),
    ],
)  # fmt: skip
def test_invalid_input_is_a_400_json_error_naming_the_field(
    server: ServerProcess, admin: Client, body: dict[str, dict[str, object]], status: int,
    error_type: str, needle: str,
) -> None:  # fmt: skip
    net = admin.create("network", name="for-errors")
    resource = next(iter(body))
    inner = {k: (net["id"] if v == "NET" else v) for k, v in body[resource].items()}
    plural = {"network": "networks", "networks": "networks", "subnet": "subnets",
              "port": "ports"}[resource]  # fmt: skip
    before = admin.list("port", network_id=net["id"])
    response = _raw(server, "POST", f"/v2.0/{plural}", json={resource: inner})
    assert response.status_code == status
    error = _error_of(response)
    assert error["type"] == error_type
    assert needle in error["message"]
    assert admin.list("port", network_id=net["id"]) == before  # nothing changed
    admin.delete("network", net["id"])


def test_duplicate_segment_is_a_409(admin: Client) -> None:
    a = admin.create("network", **{"provider:network_type": "gre",
                                   "provider:segmentation_id": 4242})  # fmt: skip
    with pytest.raises(ConflictError) as err:
        admin.create("network", **{"provider:network_type": "gre",
                                   "provider:segmentation_id": 4242})  # fmt: skip
    assert err.value.error_type == "SegmentationIdInUse"
    assert a["mtu"] == 1458
    admin.delete("network", a["id"])
    # released: the id can be used again
    b = admin.create("network", **{"provider:network_type": "gre",
                                   "provider:segmentation_id": 4242})  # fmt: skip
    admin.delete("network", b["id"])


def test_vlan_and_flat_networks_name_their_physical_network(admin: Client) -> None:
    vlan = admin.create("network", **{"provider:network_type": "vlan"})
    assert vlan["provider:physical_network"] == "physnet1"
    assert 1000 <= vlan["provider:segmentation_id"] <= 2999
    assert vlan["mtu"] == 1500
    flat = admin.create("network", **{"provider:network_type": "flat",
                                      "provider:physical_network": "physnet1"})  # fmt: skip
    assert flat["provider:segmentation_id"] is None
    for n in (vlan, flat):
        admin.delete("network", n["id"])


def test_missing_or_bad_token_is_a_401(server: ServerProcess) -> None:
    for token in (None, "not-a-token"):
        response = _raw(server, "GET", "/v2.0/networks", token=token)
        assert response.status_code == 401
        assert _error_of(response)["type"] == "Unauthorized"


def test_unknown_path_and_method_answer_in_the_error_shape(server: ServerProcess) -> None:
    response = _raw(server, "GET", "/v2.0/routers")
    assert response.status_code == 404
    assert _error_of(response)["type"] == "NotFound"
    response = _raw(server, "PATCH", "/v2.0/networks")
    assert response.status_code == 405
    _error_of(response)


def test_malformed_json_is_a_400(server: ServerProcess) -> None:
    response = _raw(server, "POST", "/v2.0/networks", content=b"{not json")
    assert response.status_code == 400
    assert "JSON" in _error_of(response)["message"]


def test_deleting_a_network_with_ports_or_a_subnet_with_addresses_is_a_409(
    tenant_a: Client,
) -> None:
    net = tenant_a.create("network", name="busy")
    sub = tenant_a.create("subnet", network_id=net["id"], cidr="10.3.0.0/24")
    port = tenant_a.create("port", network_id=net["id"])
    with pytest.raises(ConflictError) as err:
        tenant_a.delete("network", net["id"])
    assert err.value.error_type == "NetworkInUse"
    with pytest.raises(ConflictError) as err:
        tenant_a.delete("subnet", sub["id"])
    assert err.value.error_type == "SubnetInUse"
    tenant_a.delete("port", port["id"])
    tenant_a.delete("network", net["id"])  # its subnet goes with it
    with pytest.raises(NotFoundError):
        tenant_a.show("subnet", sub["id"])


def test_exhausted_subnet_is_a_409_and_leaves_no_half_made_port(tenant_a: Client) -> None:
    net = tenant_a.create("network", name="tiny")
    tenant_a.create("subnet", network_id=net["id"], cidr="10.4.0.0/30")  # one usable address
    tenant_a.create("port", network_id=net["id"])
    with pytest.raises(ConflictError) as err:
        tenant_a.create("port", network_id=net["id"])
    assert err.value.error_type == "IpAddressGenerationFailure"
    assert len(tenant_a.list("port", network_id=net["id"])) == 1


def test_openapi_schema_describes_the_resources(server: ServerProcess) -> None:
    schema = httpx.get(server.url + "/openapi.json", timeout=10).json()
    for path in ("/v2.0/networks", "/v2.0/subnets/{item_id}", "/v2.0/ports", "/v2.0/watch",
                 "/v2.0/agents/{item_id}/heartbeat", "/v2.0/tokens"):  # fmt: skip
        assert path in schema["paths"]


def test_bulk_create_makes_all_in_one_transaction_or_nothing(tenant_a: Client) -> None:
    [net] = tenant_a.create_many("network", [{"name": "bulk"}])
    sub = tenant_a.create("subnet", network_id=net["id"], cidr="10.5.0.0/24")
    made = tenant_a.create_many("port", [{"network_id": net["id"], "name": f"p{i}"}
                                         for i in range(20)])  # fmt: skip
    assert [p["name"] for p in made] == [f"p{i}" for i in range(20)]
    assert len({p["fixed_ips"][0]["ip_address"] for p in made}) == 20
    taken = made[0]["fixed_ips"][0]["ip_address"]
    batch = [{"network_id": net["id"], "name": "ok-1"}, {"network_id": net["id"], "name": "ok-2"},
             {"network_id": net["id"], "fixed_ips": [{"subnet_id": sub["id"],
                                                      "ip_address": taken}]}]  # fmt: skip
    with pytest.raises(ConflictError, match=r"ports\[2\]") as err:
        tenant_a.create_many("port", batch)
    assert err.value.error_type == "IpAddressAlreadyAllocated"
    names = {p["name"] for p in tenant_a.list("port", network_id=net["id"])}
    assert not names & {"ok-1", "ok-2"}  # the whole batch was refused


def test_sorting_and_paging_walk_every_item_once(tenant_a: Client, server: ServerProcess) -> None:
    names = ["delta", "alpha", "echo", "charlie", "bravo"]
    for name in names:
        tenant_a.create("network", name=name)
    by_name = tenant_a.list("network", sort_key="name", sort_dir="desc", fields=["name"])
    assert [n["name"] for n in by_name] == sorted(names, reverse=True)
    seen: list[str] = []
    marker = None
    while True:
        page = tenant_a.list("network", sort_key="name", limit=2, marker=marker)
        if not page:
            break
        seen += [n["name"] for n in page]
        marker = page[-1]["id"]
    assert seen == sorted(names)
    raw = httpx.get(server.url + "/v2.0/networks?limit=2&sort_key=name",
                    headers={"X-Auth-Token": tenant_a.token}, timeout=10).json()  # fmt: skip
    [link] = raw["networks_links"]
    assert link["rel"] == "next" and f"marker={raw['networks'][-1]['id']}" in link["href"]
    for bad in ({"limit": 0}, {"sort_key": "colour"}, {"sort_dir": "up"}, {"marker": "nope"}):
        with pytest.raises(ClientError) as err:
            tenant_a.list("network", **bad)
        assert err.value.status == 400
