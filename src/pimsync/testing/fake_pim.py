"""A mock Akeneo PIM: an `httpx` handler with in-memory state.

`FakePim` answers the Akeneo REST API (OAuth token, catalog structure, products, product models,
media files) from a lazy `Catalog`, with Akeneo's JSON shapes, status codes and messages. It is a
plain `handler(request) -> response` callable: use it under `httpx.MockTransport` in unit tests, or
behind `pimsync.testing.server.serve` on loopback. It has a mock clock (every answer carries a
`Date` header from it), fault injection (`faults`, `fail_next`, `drop_next`, `garble_next`,
`outage`), request statistics, and Python helpers (`update_product`, ...) that change data
without HTTP or faults.

Internals: `fake_pim_routes` (routing, token, structure, media), `fake_pim_items` (products and
models), `fake_pim_search` (filters, pagination), `fake_pim_render` (JSON), `fake_pim_write`
(PATCH/POST/DELETE), `fake_pim_structure` and `catalog` (the data).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import httpx
import orjson

from pimsync.testing import fake_pim_items, fake_pim_routes
from pimsync.testing.catalog import Catalog
from pimsync.testing.fake_pim_render import Renderer, View
from pimsync.testing.fake_pim_routes import Call, Tokens, respond
from pimsync.testing.fake_pim_search import ApiError
from pimsync.testing.fake_pim_structure import JSON, Values
from pimsync.testing.fake_pim_write import Writer, copy_json
from pimsync.testing.server import DropConnection, TimedOut

DEFAULT_CLIENT_ID = "pimsync"
DEFAULT_SECRET = "pimsync-secret"
DEFAULT_USERNAME = "pimsync"
DEFAULT_PASSWORD = "pimsync-password"
DEFAULT_START = datetime(
    2026, 3, 1, 9, 0, tzinfo=UTC
)  # after every base `updated` (< 2.5e9 products)
assert fake_pim_items  # imported for its side effect: it registers the product endpoints


class MockClock:
    """The PIM's clock: starts at `start` and moves with real time, unless frozen."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._base, self._t0, self._frozen = start.timestamp(), time.monotonic(), False
        self._lock = threading.Lock()

    def timestamp(self) -> float:
        with self._lock:
            return self._base if self._frozen else self._base + time.monotonic() - self._t0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp(), UTC)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._base += seconds

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("when must be timezone-aware")
        with self._lock:
            self._base, self._t0 = when.timestamp(), time.monotonic()

    def freeze(self) -> None:
        """Stop real time from moving the clock (`advance` and `set` still do)."""
        now = self.timestamp()
        with self._lock:
            self._base, self._frozen = now, True

    def unfreeze(self) -> None:
        with self._lock:
            self._t0, self._frozen = time.monotonic(), False


@dataclass(frozen=True)
class Faults:
    """Random faults, from a generator seeded with `seed` (one draw per request).

    Rates are probabilities per request; they must sum to at most 1. `latency` (seconds) delays
    every answer. Errors are 500/502/503; 429 carries `Retry-After: retry_after`; a drop resets
    the connection (`DropConnection`); malformed is a 200 with truncated JSON; html is a 200 with
    a proxy's HTML error page.
    """

    latency: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: int = 1
    drop_rate: float = 0.0
    malformed_rate: float = 0.0
    html_error_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        rates = [getattr(self, f.name) for f in fields(self) if f.name.endswith("_rate")]
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be >= 0 and sum to at most 1")

    @property
    def any_rate(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name.endswith("_rate"))


class RequestRecord(NamedTuple):
    method: str
    path: str
    query: dict[str, str]


@dataclass
class _OneShot:
    remaining: int  # requests left to fail; -1 until ended (an outage)
    status: int  # 0: drop the connection
    retry_after: int | None
    prefix: str | None
    skip: int = 0  # matching requests let through first
    kind: str = "status"  # or a `garble_next` kind: "truncated", "damaged", "html", "timeout"


_HTML_ERROR = (
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
    b"<hr><center>nginx</center></body></html>"
)


def _truncated(response: httpx.Response) -> httpx.Response:
    """A 200 carrying the first half of `response`'s body: a connection cut mid-answer."""
    cut = response.content[: max(1, len(response.content) // 2)]
    return httpx.Response(200, content=cut, headers={"Content-Type": "application/json"})


def _damaged(response: httpx.Response) -> httpx.Response:
    """A 200 whose envelope is whole and ends as a list page ends, but whose records were cut
    in the middle: what a buggy proxy or serializer sends, rarer and worse than a cut answer."""
    content = response.content
    start = content.find(b'"items":[')
    if start < 0:  # not a list page: cut it like any other answer
        return _truncated(response)
    cut = content[: start + (len(content) - start) // 2] + b"]}}"
    return httpx.Response(200, content=cut, headers={"Content-Type": "application/json"})


def _html_error() -> httpx.Response:
    """A 200 carrying a proxy's HTML error page instead of the JSON asked for."""
    return httpx.Response(200, content=_HTML_ERROR, headers={"Content-Type": "text/html"})


class FakePim:
    """The mock Akeneo PIM (see the module docstring). Thread-safe: one lock serializes requests."""

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        products: int = 100,
        seed: int = 0,
        client_id: str = DEFAULT_CLIENT_ID,
        secret: str = DEFAULT_SECRET,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        timezone: str = "UTC",
        token_ttl: int = 3600,
        start: datetime = DEFAULT_START,
        faults: Faults | None = None,
        request_log: int = 1000,
    ) -> None:
        self.catalog = catalog if catalog is not None else Catalog(products, seed)
        self.client_id, self.secret = client_id, secret
        self.username, self.password = username, password
        self.tz = ZoneInfo(timezone)
        self.clock = MockClock(start)
        self.tokens = Tokens(token_ttl, f"{client_id}:{self.catalog.seed}")
        self.renderer = Renderer(self.catalog)
        self.writer = Writer(self.catalog, self.renderer)
        self.base_url = "http://localhost"  # of the last request; the Python helpers use it
        self._lock = threading.RLock()
        self._iso_cache: dict[int, str] = {}
        self._one_shots: list[_OneShot] = []
        self._outage: _OneShot | None = None
        self.faults = faults or Faults()
        self.requests: deque[RequestRecord] = deque(maxlen=request_log)  # the latest ones
        self.request_count = 0
        self.request_counts: Counter[str] = Counter()  # "GET /api/rest/v1/products-uuid/{code}"
        self.items_served: Counter[str] = Counter()  # "products", "product_models", ...
        self._served = bytearray()  # times each product index was served (saturates at 255)
        self.served_models: set[str] = set()

    # -- faults ------------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults, self._rng = faults, random.Random(faults.seed)

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        retry_after: int | None = None,
        *,
        path_prefix: str | None = None,
    ) -> None:
        """Fail the next `n` requests (those whose path starts with `path_prefix`, if given).

        A 429 always carries `Retry-After` (`retry_after`, default `faults.retry_after`); other
        statuses carry it when `retry_after` is given. One-shots queue up in call order.
        """
        with self._lock:
            self._one_shots.append(_OneShot(n, status, retry_after, path_prefix))

    def drop_next(self, n: int = 1, *, path_prefix: str | None = None) -> None:
        """Reset the connection, without answering, on the next `n` (matching) requests."""
        with self._lock:
            self._one_shots.append(_OneShot(n, 0, None, path_prefix))

    def garble_next(
        self, n: int = 1, kind: str = "truncated", *, path_prefix: str | None = None
    ) -> None:
        """Spoil the next `n` (matching) answers, the way a proxy or a dying PHP worker does:
        "truncated" is a 200 with the first half of the real answer's JSON, "damaged" a 200 with
        a list page's envelope whole and its records cut in the middle, "html" a 200 with an
        HTML error page, "timeout" no answer in time (`TimedOut`)."""
        if kind not in ("truncated", "damaged", "html", "timeout"):
            raise ValueError(f"unknown garble kind {kind!r}")
        with self._lock:
            self._one_shots.append(_OneShot(n, 200, None, path_prefix, kind=kind))

    def outage(
        self,
        after_requests: int = 0,
        status: int = 503,
        *,
        retry_after: int | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Let `after_requests` more (matching) requests through, then fail every one of them
        until `end_outage()`: a PIM going down in the middle of an import."""
        with self._lock:
            self._outage = _OneShot(-1, status, retry_after, path_prefix, skip=after_requests)

    def end_outage(self) -> None:
        with self._lock:
            self._outage = None

    # -- statistics --------------------------------------------------------------------------

    def reset_stats(self) -> None:
        with self._lock:
            self.requests.clear()
            self.request_count = 0
            self.request_counts.clear()
            self.items_served.clear()
            self._served = bytearray()
            self.served_models.clear()

    def times_served(self, product: int | str) -> int:
        """How often a product was returned (in lists or alone), saturating at 255."""
        index = self._index(product)
        return self._served[index] if index < len(self._served) else 0

    def served_uuids(self) -> set[str]:
        """uuids of the products returned since the last `reset_stats`."""
        with self._lock:
            return {self.catalog.uuid_of(i) for i, n in enumerate(self._served) if n}

    def mark_served(self, indices: list[int]) -> None:
        if indices and max(indices) >= len(self._served):
            self._served.extend(bytes(max(indices) + 1 - len(self._served)))
        for i in indices:
            if self._served[i] < 255:
                self._served[i] += 1
        self.items_served["products"] += len(indices)

    # -- Python helpers (no HTTP, no faults) -------------------------------------------------

    def now(self) -> int:
        """The mock clock in whole epoch seconds (Akeneo stores seconds)."""
        return int(self.clock.timestamp())

    def _index(self, product: int | str) -> int:
        index = self.catalog.index_of_uuid(product) if isinstance(product, str) else product
        if index is None or self.catalog.product_record(index) is None:
            raise KeyError(f"no product {product!r}")
        return index

    @contextmanager
    def _helper(self) -> Iterator[None]:
        """Hold the lock, and turn Akeneo errors into ValueError for Python callers."""
        with self._lock:
            try:
                yield
            except ApiError as error:
                raise ValueError(f"{error.status} {orjson.dumps(error.body()).decode()}") from None

    def update_product(
        self, product: int | str, values: Values | None = None, **fields: Any
    ) -> str:
        """PATCH a product (by index or uuid) with Akeneo's merge semantics; returns its uuid.

        `updated` becomes the mock clock's second, e.g. `update_product(7, enabled=False)` or
        `update_product(7, {"name": [{"locale": "en_US", "scope": None, "data": "New"}]})`.
        """
        with self._helper():
            patch = {**fields, **({"values": values} if values is not None else {})}
            index, _ = self.writer.write_product(self._index(product), patch, self.now())
            return self.catalog.uuid_of(index)

    def create_product(self, values: Values | None = None, **fields: Any) -> str:
        """Create a product, as `POST /products-uuid` does; returns its uuid."""
        with self._helper():
            patch = {**fields, **({"values": values} if values is not None else {})}
            index, _ = self.writer.write_product(None, patch, self.now())
            return self.catalog.uuid_of(index)

    def update_model(self, code: str, values: Values | None = None, **fields: Any) -> str:
        """PATCH (or create) a product model. Its variants then match `updated >` as well."""
        with self._helper():
            patch = {**fields, **({"values": values} if values is not None else {})}
            self.writer.write_model(code, patch, self.now())
            return code

    def delete_product(self, product: int | str) -> None:
        with self._helper():
            self.writer.delete_product(self._index(product))

    def product(self, product: int | str) -> JSON:
        """The product as `GET /products-uuid/{uuid}` returns it."""
        with self._helper():
            item = self.renderer.product(self._index(product), self.view())
            return dict(copy_json(item))  # a copy: generated values share read-only fragments

    def model(self, code: str) -> JSON:
        """The product model as `GET /product-models/{code}` returns it."""
        with self._helper():
            item = self.renderer.model(code, self.view())
            if item is None:
                raise KeyError(f"no product model {code!r}")
            return dict(copy_json(item))

    def iso(self, ts: int) -> str:
        """Epoch seconds as ISO-8601 with the PIM's UTC offset, as Akeneo prints dates."""
        text = self._iso_cache.get(ts)
        if text is None:
            if len(self._iso_cache) > 100_000:
                self._iso_cache.clear()
            text = self._iso_cache[ts] = datetime.fromtimestamp(ts, self.tz).isoformat()
        return text

    def view(self, **options: Any) -> View:
        """A rendering view for the last seen base URL and the PIM's time zone."""
        return View(self.base_url, self.iso, **options)

    # -- HTTP --------------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self._faults.latency:
            time.sleep(self._faults.latency)  # outside the lock, so concurrent requests overlap
        with self._lock:
            response = self._handle(request)
        response.headers["Date"] = format_datetime(self.clock.now(), usegmt=True)
        return response

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        pairs = list(request.url.params.multi_items())
        route = fake_pim_routes.match(request.method, path)
        self.request_count += 1
        self.request_counts[f"{request.method} {route.template if route else '?'}"] += 1
        self.requests.append(RequestRecord(request.method, path, dict(pairs)))
        edge = self._edge_fault(path)
        if isinstance(edge, httpx.Response):
            return edge
        draw = self._rng.random() if self._faults.any_rate else 1.0
        f = self._faults
        if draw < f.drop_rate:
            raise DropConnection
        if draw < f.drop_rate + f.rate_limit_rate:
            return self._failure(429)
        if draw < f.drop_rate + f.rate_limit_rate + f.error_rate:
            return self._failure(self._rng.choice((500, 502, 503)))
        try:
            response = self._dispatch(request, route, pairs)
        except ApiError as error:
            response = respond(error.status, error.body())
        if edge == "truncated":
            return _truncated(response)
        if edge == "damaged":
            return _damaged(response)
        draw -= f.drop_rate + f.rate_limit_rate + f.error_rate
        if 0 <= draw < f.malformed_rate and response.content:
            return _truncated(response)
        if 0 <= draw - f.malformed_rate < f.html_error_rate:
            return _html_error()
        return response

    def _edge_fault(self, path: str) -> httpx.Response | str | None:
        """One-shot failures and outages, applied before anything else (like a proxy's).

        Answers the failure, or "truncated" / "damaged" when the real answer is to be spoiled
        afterwards."""
        for shot in [*self._one_shots, self._outage]:
            if shot is None or (shot.prefix and not path.startswith(shot.prefix)):
                continue
            if shot.skip:
                shot.skip -= 1
                continue
            if shot.remaining > 0:
                shot.remaining -= 1
                if not shot.remaining:
                    self._one_shots.remove(shot)
            if shot.kind == "timeout":
                raise TimedOut
            if shot.kind == "html":
                return _html_error()
            if shot.kind in ("truncated", "damaged"):
                return shot.kind
            if shot.status == 0:
                raise DropConnection
            return self._failure(shot.status, shot.retry_after)
        return None

    def _failure(self, status: int, retry_after: int | None = None) -> httpx.Response:
        if status == 429 and retry_after is None:
            retry_after = self._faults.retry_after
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return respond(status, {"code": status, "message": HTTPStatus(status).phrase}, headers)

    def _dispatch(
        self,
        request: httpx.Request,
        route: fake_pim_routes.Route | None,
        pairs: list[tuple[str, str]],
    ) -> httpx.Response:
        url = request.url
        self.base_url = f"{url.scheme}://{url.netloc.decode('ascii')}"
        if route is None:
            raise ApiError(404, f'No route found for "{request.method} {url.path}"')
        if route.endpoint is None:
            raise ApiError(
                405,
                f'No route found for "{request.method} {url.path}": Method Not '
                f"Allowed (Allow: {', '.join(route.methods)})",
            )
        if route.auth:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not self.tokens.valid(token, self.now()):
                raise ApiError(401, "Authentication is required")
        accept = request.headers.get("accept", "")
        if (
            accept
            and not route.raw
            and not any(t in accept for t in ("json", "*/*", "application/*"))
        ):
            raise ApiError(
                406,
                f'"{accept}" in "Accept" header is not valid. Only '
                '"application/json" or "application/hal+json" are allowed.',
            )
        body = None
        if request.method in ("POST", "PATCH") and not route.raw:
            content_type = request.headers.get("content-type", "")
            if not content_type:
                raise ApiError(
                    415,
                    'The "Content-Type" header is missing. "application/json" has '
                    "to be specified as value.",
                )
            if not content_type.startswith("application/json"):
                raise ApiError(
                    415,
                    f'"{content_type}" in "Content-Type" header is not valid. '
                    'Only "application/json" is allowed.',
                )
            try:
                body = orjson.loads(request.content)
            except orjson.JSONDecodeError:
                raise ApiError(400, "Invalid json message received") from None
        call = Call(self, request, self.base_url, dict(pairs), pairs, route.args, body)
        return route.endpoint(call)
