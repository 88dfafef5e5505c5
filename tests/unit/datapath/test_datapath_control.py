"""The control socket with a real unix socket and event loop: answers, typed errors, and a
daemon that shrugs off clients that misbehave or vanish."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelnet.datapath import messages as m
from tunnelnet.datapath.control import ControlClient, ControlServer, socket_path
from tunnelnet.datapath.errors import ControlError, DatapathError, NotRunningError
from tunnelnet.datapath.loop import EventLoop


class _Handler:
    def __init__(self) -> None:
        self.bridges: list[str] = []

    def __call__(self, request: m.Request) -> m.JSON:
        if isinstance(request, m.AddBridge):
            if request.bridge in self.bridges:
                raise DatapathError(f"bridge {request.bridge!r} already exists")
            self.bridges.append(request.bridge)
            return None
        if isinstance(request, m.ListBridges):
            return list(self.bridges)
        raise ZeroDivisionError("a bug in a handler")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, _Handler, ControlServer]]:
    loop = EventLoop()
    handler = _Handler()
    server = ControlServer(socket_path(tmp_path), handler, loop)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            loop.run_once(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield tmp_path, handler, server
    finally:
        stop.set()
        thread.join(5)
        server.close()
        loop.close()


def test_client_gets_results_of_requests_in_order(served: tuple[Path, _Handler, ControlServer]
                                                  ) -> None:
    rundir, _, _ = served
    with ControlClient(rundir, timeout=5) as client:
        assert client.call(m.AddBridge("br0")) is None
        assert client.call(m.AddBridge("br1")) is None
        assert client.call(m.ListBridges()) == ["br0", "br1"]


def test_refused_request_raises_control_error_with_daemon_message(
        served: tuple[Path, _Handler, ControlServer]) -> None:
    rundir, handler, _ = served
    with ControlClient(rundir, timeout=5) as client:
        client.call(m.AddBridge("br0"))
        with pytest.raises(ControlError, match="bridge 'br0' already exists") as info:
            client.call(m.AddBridge("br0"))
        assert info.value.kind == "DatapathError"
        # the connection is still usable after an error
        assert client.call(m.ListBridges()) == ["br0"]
    assert handler.bridges == ["br0"]


def test_handler_bug_is_an_internal_error_answer_not_a_dead_daemon(
        served: tuple[Path, _Handler, ControlServer]) -> None:
    rundir, _, _ = served
    with ControlClient(rundir, timeout=5) as client:
        with pytest.raises(ControlError, match="internal error") as info:
            client.call(m.Show())
        assert info.value.kind == "InternalError"
        assert client.call(m.ListBridges()) == []


def test_garbage_line_gets_protocol_error_and_vanishing_clients_are_forgotten(
        served: tuple[Path, _Handler, ControlServer]) -> None:
    rundir, _, server = served
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(str(socket_path(rundir)))
    raw.sendall(b"{not json\n")
    answer = m.decode_response(raw.recv(65536).rstrip(b"\n"))
    assert isinstance(answer, m.ErrorReply) and answer.kind == "ProtocolError"
    # half a request, then gone: the daemon must drop the connection and keep serving
    raw.sendall(b'{"v":1,"id":2,"op":"list-br"')
    raw.close()
    for _ in range(5):
        with ControlClient(rundir, timeout=5) as client:
            assert client.call(m.ListBridges()) == []
    for _ in range(100):
        if server.client_count == 0:
            break
        threading.Event().wait(0.02)
    assert server.client_count == 0


def test_no_daemon_is_a_clear_not_running_error(tmp_path: Path) -> None:
    with pytest.raises(NotRunningError, match=str(tmp_path)):
        ControlClient(tmp_path, timeout=1)
