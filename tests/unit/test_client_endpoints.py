"""The client's controller list: parsing, the plain-HTTP rule, and moving to the next
controller when one cannot be reached (a real controller in a thread, a port nobody holds)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tunnelnet.agent.http_controller import HttpController
from tunnelnet.api.transport import is_loopback
from tunnelnet.client import Client, ClientError
from tunnelnet.client.endpoints import parse_list
from tunnelnet.server.config import ServerConfig
from tunnelnet.server.runner import BackgroundServer


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.9.8.7", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("10.0.0.1", False), ("::", False),
    ("ctl1.example.net", False), ("localhost.example.net", False),
])  # fmt: skip
def test_loopback_is_127_slash_8_and_colon_colon_1(host: str, loopback: bool) -> None:
    # RFC 1122 3.2.1.3 (127/8) and RFC 4291 2.5.3 (::1)
    assert is_loopback(host) is loopback


def test_a_list_keeps_its_order_and_refuses_nonsense() -> None:
    found = parse_list(" https://a:9696/, http://127.0.0.1:9696 ,unix:/run/t.sock")
    assert [(e.scheme, e.url) for e in found] == [
        ("https", "https://a:9696"), ("http", "http://127.0.0.1:9696"),
        ("unix", "unix:/run/t.sock")]
    for bad, why in (("", "no controller URL"), ("ftp://a:1", "is not https://"),
                     ("https://a:1,https://a:1", "listed twice"), ("unix:", "socket path"),
                     ("https://a:99999", "controller URL")):
        with pytest.raises(ClientError, match=why):
            parse_list(bad)


def test_plain_http_to_another_host_only_when_asked() -> None:
    with pytest.raises(ClientError, match="plain HTTP to another host"):
        parse_list("http://10.0.0.1:9696")
    assert parse_list("http://10.0.0.1:9696", insecure_http=True)[0].host == "10.0.0.1"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: a connection to it is refused


@pytest.fixture
def server(tmp_path: Path) -> Iterator[BackgroundServer]:
    config = ServerConfig(db=str(tmp_path / "t.db"), port=0, admin_token="adm")
    with BackgroundServer(config) as running:
        yield running


def test_a_request_that_cannot_connect_goes_to_the_next_controller(
    server: BackgroundServer,
) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    with Client(f"{dead},{server.url}", "adm") as api:
        api.create("network", name="through-the-second")
        assert api.url == server.url  # asked first from now on
        events = api.watch(since=0, timeout=1)
        assert any(e.resource == "network" for e in events if e.type == "event")
    with Client(f"{dead},http://127.0.0.1:{_closed_port()}", "adm") as nobody, \
            pytest.raises(ClientError) as refused:
        nobody.list("network")
    message = str(refused.value)
    assert message.startswith("cannot reach the controller at ") and dead in message
    assert message.count("127.0.0.1") == 2  # each controller tried is named


def test_the_agent_asks_the_next_controller_at_once_when_one_cannot_reach_its_store() -> None:
    # a stand-in for two controllers: a's store is away (503, as server/app.py answers then)
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        if request.url.host == "a":
            return httpx.Response(503, json={"NeutronError": {
                "type": "ServiceUnavailable", "message": "the store cannot be reached"}})
        return httpx.Response(200, json={"events": [], "revision": 7})

    client = Client("https://a:9696,https://b:9696", "t", transport=httpx.MockTransport(answer))
    with client:
        ctl = HttpController(client)
        events = ctl.watch(since=5, timeout=0.1)
    assert asked == ["a", "b"] and client.url == "https://b:9696"
    assert [(e.resource, e.revision) for e in events] == [("bookmark", 7)]


def _one_answer_then_silent_close(listener: socket.socket, seen: list[bytes]) -> None:
    # a server that answers one request on a kept-alive connection, then closes it unread,
    # as a server whose idle timeout ran out does; later connections get a normal answer
    body = b'{"networks": []}'
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    first = True
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            request = conn.recv(65536)
            if not request:
                continue
            seen.append(request.split(b"\r\n", 1)[0])
            conn.sendall(answer)
            if first:
                first = False
                dropped = conn.recv(65536)  # the next request here: read, never answered
                if dropped:
                    seen.append(dropped.split(b"\r\n", 1)[0])


@pytest.mark.parametrize(("method", "retried"), [("GET", True), ("POST", False)])
def test_a_connection_the_server_closed_while_idle_is_retried_only_when_repeating_is_safe(
        method: str, retried: bool) -> None:
    import threading

    seen: list[bytes] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        thread = threading.Thread(target=_one_answer_then_silent_close, args=(listener, seen),
                                  daemon=True)
        thread.start()
        with Client(f"http://127.0.0.1:{port}", "tok") as client:
            client.request("GET", "/v2.0/networks")
            if retried:
                client.request(method, "/v2.0/networks")
            else:
                with pytest.raises(ClientError):
                    client.request(method, "/v2.0/networks", {"network": {}})
    # RFC 9110 9.2.2: only an idempotent request is sent again (a POST may have been taken)
    assert [line.split()[0].decode() for line in seen] == (
        ["GET", method, method] if retried else ["GET", method])


def test_a_long_poll_waits_for_its_answer_as_long_as_any_request_after_its_own_wait() -> None:
    # issue 21: an agent whose controller answers 30 s late must take the late answer of its
    # long poll too (its client's timeout, 60 s for the agent), not give up 10 s after the
    # wait it asked for
    read: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        read.append(request.extensions["timeout"]["read"])
        return httpx.Response(200, json={"events": [], "revision": 7})

    with Client("https://a:9696", "t", timeout=60.0,
                transport=httpx.MockTransport(answer)) as client:
        client.events(5, timeout=0.5)
    assert read == [60.5]
