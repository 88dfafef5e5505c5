"""A controller that answers late: a unix-socket relay that holds every byte the controller
sends back for ``delay`` seconds before passing it on.

Requests go through at once, so the controller hears everything in time (a heartbeat is not
late, the agent stays alive in its eyes); only its answers are late, as from a controller
whose replies queue behind a slow store or an overloaded network. This is the "controller
answering 30 s late" of issue 21: the agent asks, and learns the answer ``delay`` seconds
later. The delay can be changed while it runs (0: a plain relay).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType


class LateProxy:
    def __init__(self, listen: Path, upstream: Path, delay: float) -> None:
        self.listen = listen
        self.upstream = upstream
        self.delay = delay
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        listen.unlink(missing_ok=True)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(listen))
        self._server.listen(64)
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, name="late-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"unix:{self.listen}"

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(self.upstream))
            except OSError:
                client.close()
                upstream.close()
                continue
            self._track(client)
            self._track(upstream)
            threading.Thread(target=self._pipe, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True),
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, late: bool) -> None:
        """Copy src to dst; answers (``late``) each leave ``delay`` s after they arrived."""
        queue: deque[tuple[float, bytes]] = deque()
        ready = threading.Condition()
        done = threading.Event()

        def sender() -> None:
            while True:
                with ready:
                    while not queue and not done.is_set():
                        ready.wait(0.2)
                    if not queue:
                        break
                    due, chunk = queue.popleft()
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                try:
                    dst.sendall(chunk)
                except OSError:
                    break
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        out = threading.Thread(target=sender, daemon=True)
        out.start()
        while not self._stop.is_set():
            try:
                chunk = src.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            with ready:
                queue.append((time.monotonic() + (self.delay if late else 0.0), chunk))
                ready.notify()
        done.set()
        with ready:
            ready.notify()

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(timeout=2)
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        self.listen.unlink(missing_ok=True)

    def __enter__(self) -> LateProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
