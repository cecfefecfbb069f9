"""Network faults on loopback, for the tests of remote storage: nothing mocked, real sockets.

- `closed_endpoint`: a 127.0.0.1 URL where nothing listens (connection refused).
- `StalledServer`: accepts connections and reads requests, never answers (a stalled server,
  or a network that stopped forwarding bytes).
"""

from __future__ import annotations

import socket
import threading


def closed_endpoint() -> str:
    """An http URL on a 127.0.0.1 port that was free a moment ago and has no listener."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class StalledServer:
    """A listener that takes every connection and every byte sent, and never replies."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._connections: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            threading.Thread(target=self._swallow, args=(connection,), daemon=True).start()

    @staticmethod
    def _swallow(connection: socket.socket) -> None:
        try:
            while connection.recv(1 << 16):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for connection in self._connections:
            connection.close()

    def __enter__(self) -> StalledServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
