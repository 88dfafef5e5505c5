"""The control socket: a unix stream server inside the daemon's loop, and the blocking client.

The server never lets one client hurt the daemon: a client that sends garbage gets a typed
error answer, one that vanishes mid-request is forgotten (its half-written answer dropped), and
a request's failure is an answer, never an exception out of the loop.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Final

from tunnelnet.datapath import messages
from tunnelnet.datapath.errors import ControlError, NotRunningError, ProtocolError
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.errors import TunnelnetError

log = logging.getLogger(__name__)

SOCKET_NAME: Final = "vswitchd.sock"
_RECV: Final = 65536

Handler = Callable[[messages.Request], messages.JSON]


def socket_path(rundir: str | os.PathLike[str]) -> Path:
    return Path(rundir) / SOCKET_NAME


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox = bytearray()
        self.outbox = bytearray()


class ControlServer:
    """Accepts clients on ``path`` and answers each request line with ``handler``'s result."""

    def __init__(self, path: Path, handler: Handler, loop: EventLoop) -> None:
        self.path = path
        self._handler = handler
        self._loop = loop
        self._clients: dict[int, _Connection] = {}
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(str(path))
        except OSError:
            self._listener.close()
            raise
        os.chmod(path, 0o600)  # the socket is as powerful as root on the switch
        self._listener.listen(16)
        self._listener.setblocking(False)
        loop.add_reader(self._listener, self._accept)

    def close(self) -> None:
        for fd in list(self._clients):
            self._drop(fd)
        self._loop.remove_reader(self._listener)
        self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and friends: keep serving the others
                log.warning("control socket accept failed: %s", exc)
                return
            sock.setblocking(False)
            conn = _Connection(sock)
            fd = sock.fileno()
            self._clients[fd] = conn
            self._loop.add_reader(fd, lambda fd=fd: self._readable(fd))  # type: ignore[misc]

    def _readable(self, fd: int) -> None:
        conn = self._clients.get(fd)
        if conn is None:
            return
        try:
            data = conn.sock.recv(_RECV)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        conn.inbox += data
        if len(conn.inbox) > messages.MAX_LINE and b"\n" not in conn.inbox:
            conn.outbox += messages.encode_response(
                messages.ErrorReply(0, "ProtocolError", "request line too long")
            )
            conn.inbox.clear()
        while True:
            end = conn.inbox.find(b"\n")
            if end < 0:
                break
            line = bytes(conn.inbox[:end])
            del conn.inbox[: end + 1]
            if line.strip():
                conn.outbox += messages.encode_response(self._answer(line))
        self._flush(fd)

    def _answer(self, line: bytes) -> messages.Response:
        try:
            request_id, request = messages.decode_request(line)
        except ProtocolError as exc:
            return messages.ErrorReply(exc.request_id, "ProtocolError", str(exc))
        try:
            return messages.Reply(request_id, self._handler(request))
        except TunnelnetError as exc:
            return messages.ErrorReply(request_id, type(exc).__name__, str(exc))
        except Exception:  # a bug must not take the datapath down with it; it is logged
            log.exception("control request %s failed", request.OP)
            return messages.ErrorReply(
                request_id, "InternalError", f"{request.OP}: internal error (see the daemon log)"
            )

    def _flush(self, fd: int) -> None:
        conn = self._clients.get(fd)
        if conn is None:
            return
        try:
            while conn.outbox:
                sent = conn.sock.send(conn.outbox)
                del conn.outbox[:sent]
        except BlockingIOError:
            self._loop.add_writer(fd, lambda: self._flush(fd))
            return
        except OSError:  # the client went away; its answer has no reader
            self._drop(fd)
            return
        self._loop.remove_writer(fd)

    def _drop(self, fd: int) -> None:
        conn = self._clients.pop(fd, None)
        if conn is None:
            return
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)
        conn.sock.close()


class ControlClient:
    """Blocking client: ``call(request)`` returns the result or raises ControlError."""

    def __init__(self, rundir: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = socket_path(rundir)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self._sock.close()
            raise NotRunningError(
                f"no vswitchd is listening on {self.path} ({exc.strerror})"
            ) from None
        except OSError as exc:
            self._sock.close()
            raise NotRunningError(f"cannot connect to {self.path}: {exc}") from None
        self._next_id = 1
        self._buffer = bytearray()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def call(self, request: messages.Request) -> messages.JSON:
        request_id = self._next_id
        self._next_id += 1
        try:
            self._sock.sendall(messages.encode_request(request, request_id))
            line = self._read_line()
        except TimeoutError:
            raise ControlError("Timeout", f"{request.OP}: vswitchd did not answer in time"
                               ) from None
        except OSError as exc:
            raise ControlError("ConnectionLost", f"{request.OP}: {exc}") from None
        response = messages.decode_response(line)
        if response.id != request_id:
            raise ProtocolError(f"answer to request {response.id}, expected {request_id}")
        if isinstance(response, messages.ErrorReply):
            raise ControlError(response.kind, response.message)
        return response.result

    def _read_line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            data = self._sock.recv(_RECV)
            if not data:
                raise OSError(errno.ECONNRESET, "vswitchd closed the connection")
            self._buffer += data
