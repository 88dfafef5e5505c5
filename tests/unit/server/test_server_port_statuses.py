"""`PUT /v2.0/port_statuses` against a real controller process: many ports' statuses in one
request and one transaction (Neutron's update_device_list), with what the single form does
for each port that changes, nothing for one that does not, and JSON 4xx on bad input."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from support.controller import ADMIN_TOKEN, AGENT_TOKEN, ServerProcess
from tunnelnet.client import Client

PATH = "/v2.0/port_statuses"


def _put(server: ServerProcess, body: Any = None, *, token: str | None = AGENT_TOKEN,
         content: bytes | None = None) -> httpx.Response:
    headers = {"X-Auth-Token": token} if token else {}
    if content is not None:
        headers["Content-Type"] = "application/json"
    return httpx.put(server.url + PATH, headers=headers, timeout=10, content=content,
                     json=body if content is None else None)


def _error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"NeutronError"}
    assert set(body["NeutronError"]) == {"type", "message", "detail"}
    return body["NeutronError"]  # type: ignore[no-any-return]


def _ports(admin: Client, count: int) -> tuple[str, list[dict[str, Any]]]:
    net = admin.create("network", name="statuses")
    created = admin.create_many("port", [
        {"network_id": net["id"], "binding:host_id": "hv-statuses"} for _ in range(count)])
    return net["id"], created


def test_one_request_sets_each_listed_port_and_only_those(
        server: ServerProcess, admin: Client, agent: Client) -> None:
    _, ports = _ports(admin, 4)
    a, b, c, untouched = (p["id"] for p in ports)
    assert {p["status"] for p in ports} == {"DOWN"}
    answer = agent.set_port_statuses({a: "ACTIVE", b: "ACTIVE", c: "ERROR"})
    assert sorted(answer["updated"]) == sorted([a, b, c])
    assert answer["unchanged"] == [] and answer["not_found"] == []
    shown = {p["id"]: p for p in admin.list("port", device_owner="")
             if p["id"] in (a, b, c, untouched)}
    assert {i: shown[i]["status"] for i in (a, b, c, untouched)} == {
        a: "ACTIVE", b: "ACTIVE", c: "ERROR", untouched: "DOWN"}
    # as the single form writes a port: one revision more, a new updated_at field kept
    assert {shown[i]["revision_number"] for i in (a, b, c)} == {2}
    assert shown[untouched]["revision_number"] == 1


def test_a_port_already_in_that_status_is_not_written_again(
        server: ServerProcess, admin: Client, agent: Client) -> None:
    network_id, ports = _ports(admin, 2)
    a, b = (p["id"] for p in ports)
    agent.set_port_statuses({a: "ACTIVE"})
    _, revision = admin.list_with_revision("port")
    answer = agent.set_port_statuses({a: "ACTIVE", b: "ACTIVE"})
    assert answer == {"updated": [b], "unchanged": [a], "not_found": []}
    assert admin.show("port", a)["revision_number"] == 2
    # the watch shows the one change, not the repeated status
    events, _ = admin.events(revision, timeout=2.0)
    changed = [(e.resource, e.action, (e.object or {}).get("id")) for e in events
               if e.type == "event"]
    assert changed == [("port", "update", b)]
    assert (events[0].object or {})["status"] == "ACTIVE"
    assert (events[0].object or {})["network_id"] == network_id


def test_a_deleted_port_is_answered_not_found_and_the_others_are_set(
        server: ServerProcess, admin: Client, agent: Client) -> None:
    _, ports = _ports(admin, 2)
    kept, gone = (p["id"] for p in ports)
    admin.delete("port", gone)
    answer = agent.set_port_statuses({gone: "DOWN", kept: "ACTIVE"})
    assert answer == {"updated": [kept], "unchanged": [], "not_found": [gone]}
    assert admin.show("port", kept)["status"] == "ACTIVE"


def test_the_single_form_still_sets_one_port(admin: Client, agent: Client) -> None:
    _, ports = _ports(admin, 1)
    assert agent.set_port_status(ports[0]["id"], "ACTIVE")["status"] == "ACTIVE"
    assert admin.show("port", ports[0]["id"])["status"] == "ACTIVE"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"port_statuses": []}, "port_statuses"),
        ({"port_statuses": [{"id": "PORT", "status": "UP"}]}, "status"),
        ({"port_statuses": [{"status": "ACTIVE"}]}, "id"),
        ({"port_statuses": [{"id": "PORT", "status": "ACTIVE", "host": "hv1"}]}, "host"),
        ({"port_statuses": [{"id": "PORT", "status": "ACTIVE"},
                            {"id": "PORT", "status": "DOWN"}]}, "listed twice"),
        ({"port_statuses": [{"id": f"p{i}", "status": "ACTIVE"} for i in range(1001)]},
         "port_statuses"),
        ({"ports": [{"id": "PORT", "status": "ACTIVE"}]}, "port_statuses"),
        ([{"id": "PORT", "status": "ACTIVE"}], ""),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_json_error_and_changes_nothing(
        server: ServerProcess, admin: Client, body: Any, needle: str) -> None:
    _, ports = _ports(admin, 1)
    port_id = ports[0]["id"]

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return port_id if value == "PORT" else value

    response = _put(server, fill(body))
    assert response.status_code == 400
    error = _error_of(response)
    assert error["type"] == "InvalidInput" and needle in error["message"]
    assert admin.show("port", port_id)["status"] == "DOWN"


def test_a_body_that_is_not_json_is_a_400(server: ServerProcess) -> None:
    response = _put(server, content=b'{"port_statuses": [')
    assert response.status_code == 400
    assert _error_of(response)["type"] == "InvalidInput"


def test_only_admin_and_agent_tokens_may_report(
        server: ServerProcess, admin: Client, tenant_a: Client) -> None:
    _, ports = _ports(admin, 1)
    body = {"port_statuses": [{"id": ports[0]["id"], "status": "ACTIVE"}]}
    assert _put(server, body, token=None).status_code == 401
    assert _error_of(_put(server, body, token="not-a-token"))["type"] == "Unauthorized"
    refused = _put(server, body, token=tenant_a.token)
    assert refused.status_code == 403 and _error_of(refused)["type"] == "PolicyNotAuthorized"
    assert admin.show("port", ports[0]["id"])["status"] == "DOWN"
    assert _put(server, body, token=ADMIN_TOKEN).json()["updated"] == [ports[0]["id"]]


def test_reports_sent_at_once_each_get_their_own_answer_and_every_change_is_logged_once(
        server: ServerProcess, admin: Client) -> None:
    """Concurrent reports are written together (group commit): each answer must still be its
    own report's, and each port change one revision and one event, as if sent one by one."""
    _, ports = _ports(admin, 60)
    ids = [p["id"] for p in ports]
    _, since = admin.list_with_revision("port")
    reports = [{pid: "ACTIVE" for pid in ids[i * 3:(i + 1) * 3]} for i in range(20)]
    reports[5][ids[0]] = "ACTIVE"  # listed by two reports: one updates it, one finds it so
    answers: list[dict[str, list[str]] | None] = [None] * len(reports)

    def send(index: int) -> None:
        with Client(server.url, AGENT_TOKEN) as client:
            answers[index] = client.set_port_statuses(reports[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(reports))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for report, answer in zip(reports, answers, strict=True):
        assert answer is not None and answer["not_found"] == []
        assert sorted(answer["updated"] + answer["unchanged"]) == sorted(report)
    assert sorted(pid for a in answers if a for pid in a["updated"]) == sorted(ids)
    assert sum(ids[0] in a["unchanged"] for a in answers if a) == 1
    shown = {p["id"]: p for p in admin.list("port") if p["id"] in ids}
    assert {p["status"] for p in shown.values()} == {"ACTIVE"}
    assert {p["revision_number"] for p in shown.values()} == {2}
    events, _ = admin.events(since, timeout=0)
    updates = [e.object["id"] for e in events if e.resource == "port" and e.object]
    assert sorted(updates) == sorted(ids)  # each port once
