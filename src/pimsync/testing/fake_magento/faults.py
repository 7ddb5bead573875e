"""Fault injection: latency, 5xx answers, deadlocks, dropped connections, scripted failures.

A scripted failure can wait for a path (a glob), strike before Magento handles the request or
after it (the write is done, its answer lost), and be an answer, a dropped connection, a timeout,
a truncated JSON body or an HTML page served with 200.

Every random decision comes from one seeded `random.Random`, drawn only when its ratio is above
zero, so a single-threaded run is reproducible. Ratios and latency can change at any time.
"""

from __future__ import annotations

import fnmatch
import importlib
import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from .errors import (
    PRODUCT_NOT_SAVED,
    error_response,
    html_response,
    internal_error,
    json_response,
    route_not_found,
    unauthorized,
)


@dataclass(frozen=True, slots=True)
class Failure:
    """One scripted answer for `FakeMagento.fail_next`; status 0 drops the connection.

    `kind` other than "answer" is a `garble_next` fault: "timeout", "truncated" (a 200 with half
    the JSON) or "html" (a 200 with an HTML page). `path` is a glob the request path (after
    ``/rest/<store>``) must match; with `after`, Magento handles the request first.
    """

    status: int
    message: str | None = None
    body: Any = None
    retry_after: float | None = None
    kind: str = "answer"
    path: str | None = None
    after: bool = False

    def matches(self, path: str) -> bool:
        return self.path is None or fnmatch.fnmatchcase(path, self.path)


class Faults:
    """The runtime-settable fault switches shared by the handler and the bulk consumer."""

    def __init__(
        self,
        *,
        seed: int = 0,
        latency: float = 0.0,
        error_ratio: float = 0.0,
        error_statuses: tuple[int, ...] = (500, 502, 503),
        deadlock_ratio: float = 0.0,
        error_body_ratio: float = 0.0,
        drop_ratio: float = 0.0,
        bulk_retry_ratio: float = 0.0,
    ) -> None:
        self.latency = latency
        self.error_ratio = error_ratio
        self.error_statuses = error_statuses
        self.deadlock_ratio = deadlock_ratio
        self.error_body_ratio = error_body_ratio
        self.drop_ratio = drop_ratio
        self.bulk_retry_ratio = bulk_retry_ratio
        self.revoked = False
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._scripted: deque[Failure] = deque()

    def roll(self, ratio: float) -> bool:
        if ratio <= 0:
            return False
        with self._lock:
            return self._rng.random() < ratio

    def script(self, failure: Failure, times: int) -> None:
        with self._lock:
            self._scripted.extend([failure] * times)

    def clear(self) -> None:
        with self._lock:
            self._scripted.clear()

    def take_scripted(self, path: str) -> Failure | None:
        """The first scripted failure waiting for this path, removed from the script."""
        with self._lock:
            for index, failure in enumerate(self._scripted):
                if failure.matches(path):
                    del self._scripted[index]
                    return failure
        return None

    def before_route(self, request: httpx.Request) -> httpx.Response | None:
        """Random faults that strike before Magento routes the request (proxy, PHP-FPM, network)."""
        if self.roll(self.drop_ratio):
            drop_connection(request)
        if self.roll(self.error_ratio):
            with self._lock:
                status = self._rng.choice(self.error_statuses)
            return failure_response(request, Failure(status))
        return None


def failure_response(
    request: httpx.Request, failure: Failure, answer: httpx.Response | None = None
) -> httpx.Response:
    """The body a given status typically has in front of or inside Magento; `answer` is the real
    one when the failure strikes after Magento handled the request."""
    status = failure.status
    headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after else None
    if failure.kind == "timeout":
        time_out(request)
    if failure.kind == "truncated":
        content = answer.content if answer is not None else b'{"message": "Internal Error"}'
        return httpx.Response(200, content=content[: max(1, len(content) // 2)], headers=headers)
    if failure.kind == "html":
        return html_response(200, headers)
    if status == 0:
        drop_connection(request)
    if failure.body is not None:
        return json_response(status, failure.body, headers)
    if failure.message is not None:
        return json_response(status, {"message": failure.message}, headers)
    if status in (502, 503, 504):
        return html_response(status, headers)  # nginx / CDN pages are HTML, not JSON
    if status == 429:
        return json_response(429, {"message": "Too Many Requests", "trace": None}, headers)
    if status == 401:
        return error_response(unauthorized("Magento_Catalog::products"))
    if status == 404:
        return error_response(route_not_found())
    if status == 400:
        return json_response(400, {"message": PRODUCT_NOT_SAVED}, headers)
    if status >= 500:
        return json_response(status, internal_error().body(), headers)
    return json_response(status, {"message": f"HTTP {status}"}, headers)


def _drop_type() -> type[BaseException]:
    """The exception to raise for a dropped connection.

    Behind the loopback server, ``pimsync.testing.server.DropConnection`` makes it close the
    socket; under ``httpx.MockTransport`` the client must see a transport error. A class deriving
    from both works in either place; without the server module, httpx's own error is enough.
    """
    try:
        module = importlib.import_module("pimsync.testing.server")
    except ImportError:
        return httpx.RemoteProtocolError
    server_exc = getattr(module, "DropConnection", None)
    if not (isinstance(server_exc, type) and issubclass(server_exc, BaseException)):
        return httpx.RemoteProtocolError
    if issubclass(server_exc, httpx.TransportError):
        return server_exc
    try:
        return type("ConnectionDropped", (server_exc, httpx.RemoteProtocolError), {})
    except TypeError:  # incompatible layouts: the server's own class still closes the socket
        return server_exc


def time_out(request: httpx.Request) -> NoReturn:
    """No answer in time: `httpx.ReadTimeout` under MockTransport, a reset on loopback."""
    try:
        from pimsync.testing.server import TimedOut
    except ImportError:
        raise httpx.ReadTimeout("The read operation timed out", request=request) from None
    raise TimedOut


def drop_connection(request: httpx.Request) -> NoReturn:
    exc_type = _drop_type()
    message = "Server disconnected without sending a response."
    try:
        exc = exc_type(message, request=request)  # type: ignore[call-arg]
    except TypeError:
        exc = exc_type(message)
    raise exc
