"""`FakeMagento`: the request handler, its fault switches and its inspection API."""

from __future__ import annotations

import fnmatch
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import unquote

import httpx
import orjson

from .bulk import BulkManager
from .context import Call
from .errors import (
    BAD_LOGIN,
    ApiError,
    deadlock,
    error_response,
    internal_error,
    json_response,
    required_field,
    route_not_found,
    unauthorized,
)
from .faults import Failure, Faults, failure_response
from .inspection import Inspection
from .routes import build_router
from .state import CatalogState, OptionAddResult, Settings
from .store import StoreConfig, StoreView


class RequestRecord(NamedTuple):
    """One request as the fake saw it; ``path`` excludes ``/rest/<store>``."""

    method: str
    path: str
    store: str | None  # the URL store code; None for plain /rest/V1


class FakeMagento(Inspection):
    """An in-memory Magento 2.4 REST API: a callable ``(httpx.Request) -> httpx.Response``.

    Use it under ``httpx.MockTransport(fm)`` or behind ``pimsync.testing.server.serve(fm)``.
    ``close()`` (or ``with FakeMagento() as fm:``) stops the background bulk consumer.
    """

    def __init__(
        self,
        *,
        token: str = "magento-token",
        stores: Sequence[str | StoreView] = ("default", "fr", "de"),
        websites: Sequence[str] = ("base",),
        admin_username: str = "admin",
        admin_password: str = "magento123",
        admin_token: str = "magento-admin-token",
        latency: float = 0.0,
        error_ratio: float = 0.0,
        error_statuses: tuple[int, ...] = (500, 502, 503),
        deadlock_ratio: float = 0.0,
        error_body_ratio: float = 0.0,
        drop_ratio: float = 0.0,
        bulk_retry_ratio: float = 0.0,
        stick_bulk: bool = False,
        consumer: bool = True,
        consumer_delay: float = 0.0,
        seed: int = 0,
        strict_options: bool = False,
        string_ids: bool = False,
        option_add_result: OptionAddResult = "id",
        url_suffix: str = ".html",
        request_log_size: int = 10_000,
    ) -> None:
        self.token = token
        self.admin_token = admin_token
        self._credentials = (admin_username, admin_password)
        settings = Settings(strict_options, string_ids, option_add_result, url_suffix)
        self._state = CatalogState(StoreConfig(stores, websites), settings)
        self.faults = Faults(
            seed=seed,
            latency=latency,
            error_ratio=error_ratio,
            error_statuses=error_statuses,
            deadlock_ratio=deadlock_ratio,
            error_body_ratio=error_body_ratio,
            drop_ratio=drop_ratio,
            bulk_retry_ratio=bulk_retry_ratio,
        )
        self._bulk = BulkManager(
            self._state,
            self.faults,
            consumer=consumer,
            stuck=stick_bulk,
            consumer_delay=consumer_delay,
            on_crash=self._crashed,
        )
        self._router = build_router(self._bulk, self._login)
        self.requests: deque[RequestRecord] = deque(maxlen=request_log_size)
        self.internal_errors: list[str] = []
        self._stats_lock = threading.Lock()
        self._total = 0

    # --- the handler ----------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        raw_path = request.url.raw_path.decode("ascii", "replace").split("?", 1)[0]
        # Decode per segment so an encoded "/" (%2F) stays inside its SKU.
        segments = [unquote(s) for s in raw_path.split("/")[1:]]
        if segments[:1] == ["index.php"]:
            segments = segments[1:]
        is_rest = segments[:1] == ["rest"]
        segments = segments[1:] if is_rest else segments
        code: str | None = None
        # Only a real store code or "all" is taken as the store; anything else stays in the path.
        if is_rest and segments and self._state.config.is_store_code(segments[0]):
            code = segments.pop(0)
        self._record(RequestRecord(request.method, "/" + "/".join(segments), code))

        faults = self.faults
        if faults.latency > 0:
            time.sleep(faults.latency)  # outside the lock: a threaded server overlaps requests
        scripted = faults.take_scripted("/" + "/".join(segments))
        if scripted is not None and not scripted.after:
            return failure_response(request, scripted)
        early = faults.before_route(request)
        if early is not None:
            return early
        try:
            if not is_rest:
                raise route_not_found()
            answer = self._dispatch(request, segments, code)
        except ApiError as exc:
            answer = error_response(exc)
        if scripted is not None:  # Magento did the work; the answer is what gets lost
            return failure_response(request, scripted, answer)
        return answer

    def _dispatch(
        self, request: httpx.Request, segments: list[str], code: str | None
    ) -> httpx.Response:
        scope = self._state.config.scope(code)
        if scope is None:
            raise route_not_found()
        kind = "sync"
        if segments[:2] == ["async", "bulk"]:
            kind, segments = "bulk", segments[2:]
        elif segments[:1] == ["async"]:
            kind, segments = "async", segments[1:]
        method = request.method
        params: dict[str, str] = {}
        if kind == "bulk":
            route = self._router.match_bulk(method, segments)
        else:
            found = self._router.match(method, segments)
            route, params = found if found else (None, {})
            if kind == "async" and route is not None and route.service is None:
                route = None  # GET and other non-service routes have no async variant
        if route is None:
            raise route_not_found()
        if route.acl is not None and not self._authorized(request):
            raise unauthorized(route.acl)
        body = self._body(request)
        base_url = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}/"
        if kind != "sync":
            items = self._bulk_items(route.names, route.requires, body, params, kind == "bulk")
            with self._state.lock:
                return json_response(202, self._bulk.accept(route, scope, items, base_url))
        if route.saves and self.faults.roll(self.faults.deadlock_ratio):
            raise deadlock(route.saves)
        if method != "GET" and self.faults.roll(self.faults.error_body_ratio):
            # A 200 whose body is an error, and nothing saved: the client must not trust 200.
            return json_response(
                200, {"message": "The product was unable to be saved. Please try again."}
            )
        call = Call(self._state, scope, params, body, request.url.params, base_url)
        try:
            with self._state.lock:
                result = route.handler(call)
        except ApiError:
            raise
        except Exception as exc:
            self._crashed(exc)
            raise internal_error() from exc
        return json_response(200, result)

    @staticmethod
    def _body(request: httpx.Request) -> Any:
        content = request.content
        if not content:
            return None
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            raise ApiError(400, "Decoding error.") from None

    @staticmethod
    def _bulk_items(
        names: tuple[str, ...], requires: tuple[str, ...], body: Any, params: dict[str, str],
        is_bulk: bool,
    ) -> list[tuple[dict[str, str], Any]]:  # fmt: skip
        """Resolve async/bulk items up front: an unresolvable item fails the whole request."""
        if not is_bulk:
            body = [body]
        elif not isinstance(body, list):
            # Not a Magento message (its resolver fails obscurely): an array is required here.
            raise ApiError(400, "Bulk request body must be an array of items.")
        items = []
        for item in body:
            if not isinstance(item, dict):
                raise required_field(requires[0] if requires else "item")
            item_params = dict(params)
            for name in names if is_bulk else ():
                if name not in item:
                    raise required_field(name)
                item_params[name] = str(item[name])
            for key in requires:
                if key not in item:
                    raise required_field(key)
            items.append((item_params, item))
        return items

    def _authorized(self, request: httpx.Request) -> bool:
        if self.faults.revoked:
            return False
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() in (self.token, self.admin_token)

    def _login(self, call: Call) -> str:
        """``POST /V1/integration/admin/token``: the admin token as a JSON string."""
        body = call.body if isinstance(call.body, dict) else {}
        if "username" not in body:
            raise required_field("username")
        if (body.get("username"), body.get("password")) != self._credentials or self.faults.revoked:
            raise ApiError(401, BAD_LOGIN)
        return self.admin_token

    def _record(self, record: RequestRecord) -> None:
        self.requests.append(record)
        with self._stats_lock:
            self._total += 1

    def _crashed(self, exc: BaseException) -> None:
        self.internal_errors.append("".join(traceback.format_exception(exc)))

    # --- lifecycle and bulk -----------------------------------------------------------------

    def drain(self) -> int:
        """Apply every queued bulk operation now, in this thread; answers how many ran."""
        return self._bulk.drain()

    def pending_operations(self) -> int:
        return self._bulk.pending()

    def close(self) -> None:
        """Stop the background consumer (queued operations stay open)."""
        self._bulk.close()

    def __enter__(self) -> FakeMagento:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- fault switches ---------------------------------------------------------------------

    @property
    def latency(self) -> float:
        return self.faults.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.faults.latency = seconds

    @property
    def error_ratio(self) -> float:
        return self.faults.error_ratio

    @error_ratio.setter
    def error_ratio(self, ratio: float) -> None:
        self.faults.error_ratio = ratio

    @property
    def deadlock_ratio(self) -> float:
        return self.faults.deadlock_ratio

    @deadlock_ratio.setter
    def deadlock_ratio(self, ratio: float) -> None:
        self.faults.deadlock_ratio = ratio

    @property
    def error_body_ratio(self) -> float:
        return self.faults.error_body_ratio

    @error_body_ratio.setter
    def error_body_ratio(self, ratio: float) -> None:
        self.faults.error_body_ratio = ratio

    @property
    def stick_bulk(self) -> bool:
        return self._bulk.stuck

    @stick_bulk.setter
    def stick_bulk(self, value: bool) -> None:
        self._bulk.stuck = value

    @property
    def consumer_delay(self) -> float:
        return self._bulk.consumer_delay

    @consumer_delay.setter
    def consumer_delay(self, seconds: float) -> None:
        self._bulk.consumer_delay = seconds

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        message: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
        path: str | None = None,
        after: bool = False,
    ) -> None:
        """Answer the next `n` requests with `status` (0 drops the connection) before routing.

        `path` (a glob on the path after ``/rest/<store>``, as in `request_count`) makes the
        failures wait for matching requests; `after=True` lets Magento handle each request
        first, so a write takes effect and only its answer is replaced: a lost answer.
        """
        self.faults.script(Failure(status, message, body, retry_after, path=path, after=after), n)

    def drop_next(self, n: int = 1, *, path: str | None = None, after: bool = False) -> None:
        self.fail_next(n, 0, path=path, after=after)

    def garble_next(
        self, n: int = 1, kind: str = "truncated", *, path: str | None = None, after: bool = False
    ) -> None:
        """Spoil the next `n` (matching) answers: "timeout" (no answer in time), "truncated" (a
        200 with the first half of the JSON) or "html" (a 200 with an HTML maintenance page).
        `path` and `after` work as in `fail_next`."""
        if kind not in ("timeout", "truncated", "html"):
            raise ValueError(f"unknown garble kind {kind!r}")
        self.faults.script(Failure(200, kind=kind, path=path, after=after), n)

    def revoke_token(self) -> None:
        """Every authenticated route answers 401 until `restore_token()`."""
        self.faults.revoked = True

    def restore_token(self) -> None:
        self.faults.revoked = False

    def reject_sku(
        self,
        sku: str,
        status: int = 400,
        message: str = "The product was unable to be saved. Please try again.",
        parameters: list[Any] | dict[str, Any] | None = None,
        *,
        on_accept: bool = False,
    ) -> None:
        """Make every save of `sku` fail with this error (in bulk: operation status 3).

        With ``on_accept=True`` a bulk item for the SKU is ``"rejected"`` in ``request_items``
        instead (Magento's per-item rejection at schedule time).
        """
        with self._state.lock:
            self._state.rejections[sku.strip().lower()] = (
                ApiError(status, message, parameters),
                on_accept,
            )

    def clear_faults(self) -> None:
        """Reset ratios, scripted failures, rejections, revocation and stuck bulks."""
        faults = self.faults
        faults.latency = faults.error_ratio = faults.deadlock_ratio = 0.0
        faults.error_body_ratio = faults.drop_ratio = faults.bulk_retry_ratio = 0.0
        faults.revoked = False
        faults.clear()
        with self._state.lock:
            self._state.rejections.clear()
        self.stick_bulk = False

    # --- request statistics -----------------------------------------------------------------

    def request_count(
        self, method: str | None = None, path: str | None = None, *, store: str | bool | None = True
    ) -> int:
        """Requests seen; with filters, counted from the bounded `requests` log.

        `path` is a glob on the path after ``/rest/<store>`` (``"/V1/products/*"``); `store` is a
        URL store code, None for plain ``/rest/V1``, or True (the default) for any.
        """
        if method is None and path is None and store is True:
            return self._total
        return sum(
            (method is None or r.method == method)
            and (path is None or fnmatch.fnmatchcase(r.path, path))
            and (store is True or r.store == store)
            for r in list(self.requests)
        )

    @property
    def writes_by_sku(self) -> Counter[str]:
        """Product saves that reached ``ProductRepository::save``, per SKU as sent.

        Counts sync saves when handled and bulk/async saves when the consumer applies them;
        injected transport faults and deadlocks happen before the save and are not counted.
        A copy: it does not change under the test's feet.
        """
        with self._state.lock:
            return Counter(self._state.writes_by_sku)

    def reset_stats(self) -> None:
        self.requests.clear()
        with self._stats_lock:
            self._total = 0
        with self._state.lock:
            self._state.writes_by_sku.clear()
        self.internal_errors.clear()
