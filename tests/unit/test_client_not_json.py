"""Answers that are not JSON (a proxy's error page, a truncated body) read by the client, as
a real HTTP server in a thread sends them: the errors are the ones the client gave before it
decoded with orjson (httpx's own `Response.json` is the judge)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tunnelnet.client import Client, ClientError

_ANSWERS = {
    "/v2.0/networks/plain": (200, b"this is not json"),
    "/v2.0/networks/cut": (200, b'{"network": {"id": "n'),
    "/v2.0/networks/proxy": (502, b"<html><body>Bad Gateway</body></html>"),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's name for it
        status, body = _ANSWERS[self.path]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", ["plain", "cut"])
def test_a_success_that_is_not_json_fails_as_httpx_would(url: str, name: str) -> None:
    with pytest.raises(ValueError) as httpx_judge:
        httpx.get(f"{url}/v2.0/networks/{name}").json()
    with Client(url, "t") as client, pytest.raises(ValueError) as ours:
        client.show("network", name)
    assert isinstance(httpx_judge.value, json.JSONDecodeError)
    assert isinstance(ours.value, json.JSONDecodeError)


def test_an_error_page_that_is_not_json_names_its_status_and_text(url: str) -> None:
    with Client(url, "t") as client, pytest.raises(ClientError) as caught:
        client.show("network", "proxy")
    assert caught.value.status == 502 and caught.value.error_type == "HTTPError"
    assert "Bad Gateway" in str(caught.value)
