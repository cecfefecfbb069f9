"""Network faults on loopback, for the tests of remote storage: nothing mocked, real sockets.

- `closed_endpoint`: a 127.0.0.1 URL where nothing listens (connection refused).
- `StalledServer`: accepts connections and reads requests, never answers (a stalled server,
  or a network that stopped forwarding bytes).
- `Proxy`: forwards TCP to a real server until told to stall (hold every byte, on open
  connections too) or to refuse new connections, then to forward again; or holds just the
  requests that start with given bytes (``PUT /bucket/run/checkpoint``) until released.
"""

from __future__ import annotations

import contextlib
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
        with contextlib.suppress(OSError):
            while connection.recv(1 << 16):
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


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of `target` ("http://host:port"), with a switch.

    Modes: ``"forward"``; ``"stall"``: bytes in either direction are held, not dropped, until
    the mode changes (a partition that heals); ``"refuse"``: new connections are closed at
    once (open ones stall).
    """

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("http://").partition(":")
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.mode = "forward"
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._held: tuple[bytes, ...] = ()
        self._released = threading.Event()
        self.holding = threading.Event()  # set once a request is being held
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self, *starts: bytes) -> None:
        """Holds every request from clients that starts with one of `starts`, until `release`."""
        self._released.clear()
        self.holding.clear()
        self._held = starts

    def release(self) -> None:
        """Lets the held requests (and later ones) through."""
        self._held = ()
        self._released.set()

    def set(self, mode: str) -> None:
        assert mode in ("forward", "stall", "refuse"), mode
        self.mode = mode
        if mode == "forward":
            self._flowing.set()
        else:
            self._flowing.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            for source, sink, requests in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, requests), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        try:
            while chunk := source.recv(1 << 16):
                if requests and self._held and chunk.startswith(self._held):
                    self.holding.set()
                    self._released.wait()
                self._flowing.wait()  # held while stalled
                if self._closed:
                    return
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        self._released.set()
        self._listener.close()
        for end in self._sockets:
            end.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
