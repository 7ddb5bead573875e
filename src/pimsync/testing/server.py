"""Run an `httpx` handler on a loopback HTTP server.

The fakes in `pimsync.testing` are plain `handler(request) -> response` callables, so unit tests run
them under `httpx.MockTransport`. This module puts the same callable behind a real socket
(standard library `ThreadingHTTPServer`, HTTP/1.1 keep-alive) for integration tests, the demo and
`pimsync mock pim`. Each incoming request becomes an `httpx.Request` with an absolute URL built
from the `Host` header, so links the handler builds point back at this server.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import httpx

Handler = Callable[[httpx.Request], httpx.Response]

__all__ = ["DropConnection", "Handler", "TimedOut", "serve", "serve_forever"]

# Hop-by-hop or recomputed headers: the server frames the body itself.
_SKIPPED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


class DropConnection(httpx.RemoteProtocolError):
    """Raised by a handler to make the server reset the connection without answering.

    It subclasses `httpx.RemoteProtocolError`, so under `httpx.MockTransport` a client sees the
    same kind of error (an `httpx.TransportError`) as it does from the loopback server.
    """

    def __init__(self, message: str = "Server disconnected without sending a response.") -> None:
        super().__init__(message)


class TimedOut(DropConnection, httpx.ReadTimeout):
    """Raised by a handler to play an answer that never comes in time.

    Under `httpx.MockTransport` the client sees an `httpx.ReadTimeout`; the loopback server
    cannot make a real client wait out its timeout cheaply, so it resets the connection.
    """

    def __init__(self, message: str = "The read operation timed out") -> None:
        super().__init__(message)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: Handler) -> None:
        self.handler = handler
        # Open keep-alive connections, so closing the server also ends their threads.
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up is routine here (retries, timeouts, shutdown): stay quiet."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in one write, but keep Nagle off anyway: a delayed ACK on a
    # keep-alive connection would otherwise cost 40 ms per small response.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes | None:
        """The request body; None when the client went away before sending all of it."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                line = self.rfile.readline()
                if not line.endswith(b"\n"):
                    return None
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    return None
                chunks.append(chunk)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return body if len(body) == length else None

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            # A web server never hands a half-received request to the application: a client
            # killed while sending must not reach the handler as a truncated write.
            self.close_connection = True
            return
        host = self.headers.get("Host") or self.server.base_url.removeprefix("http://")
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _SKIPPED_HEADERS]
        request = httpx.Request(
            self.command, f"http://{host}{self.path}", headers=headers, content=body
        )
        try:
            response = self.server.handler(request)
            payload = response.read()
        except DropConnection:
            self._reset()
            return
        except Exception:
            # A bug in the handler: answer 500 so the client does not hang, and show it.
            traceback.print_exc(file=sys.stderr)
            response = httpx.Response(500, json={"code": 500, "message": "Internal server error"})
            payload = response.read()
        lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
        lines += [
            f"{name}: {value}"
            for name, value in response.headers.multi_items()
            if name.lower() not in _SKIPPED_HEADERS
        ]
        lines.append(f"Content-Length: {len(payload)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + (b"" if self.command == "HEAD" else payload))

    def _reset(self) -> None:
        """Close with SO_LINGER 0, so the client sees a connection reset (RST)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()


def _make_server(handler: Handler, host: str, port: int) -> _Server:
    return _Server((host, port), handler)


@contextlib.contextmanager
def serve(handler: Handler, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `handler` in a daemon thread; yield the base URL, e.g. `http://127.0.0.1:54321`.

    On exit the server stops, open keep-alive connections are shut down and the socket closed.
    """
    server = _make_server(handler, host, port)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server.base_url
    finally:
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()


class _Terminated(BaseException):
    """Raised by the SIGTERM handler. A BaseException, like KeyboardInterrupt: socketserver
    catches `Exception` around each new connection and would swallow a stop that lands
    while one is being accepted."""


def serve_forever(
    handler: Handler,
    *,
    host: str = "127.0.0.1",
    port: int,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `handler` in the calling thread until Ctrl-C or SIGTERM, then return cleanly.

    `on_ready(base_url)` runs once the socket listens (print "listening on ..." there).
    """
    server = _make_server(handler, host, port)
    previous: Any = None
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:

        def _terminate(signum: int, frame: FrameType | None) -> None:
            raise _Terminated

        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if on_ready is not None:
            on_ready(server.base_url)
        server.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        server.close_connections()
        server.server_close()
