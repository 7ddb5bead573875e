"""How MagentoClient talks to Magento: the connection pools, retries, and what an answer means.

`classify_response` sorts answers into success, an item rejection (`ItemRejected`: data for the
run report), a retryable failure (429, 5xx, HTML pages, database deadlocks) or a run-stopping
`MagentoError` (bad token, wrong base URL). `Sender` repeats only the retryable ones; for a write
that is not idempotent it first asks whether an attempt whose fate is unknown took effect.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)

from pimsync import __version__
from pimsync.config import MagentoConfig
from pimsync.errors import MagentoError, RetryableHTTPError
from pimsync.retry import RetryAfterWait, log_retry
from pimsync.tls import ca_bundle_context

MAX_ATTEMPTS = 5
MAX_RETRY_WAIT = 60.0
MAX_BACKOFF = 30.0  # the backoff's own ceiling; a Retry-After may ask for up to max_retry_wait
PAGE_SIZE = 300  # the largest page Magento allows when input limits are on
ROUTE_MISS = "Request does not match any route."
TOKEN_HINT = (
    "check [magento] token (an integration token needs "
    "oauth/consumer/enable_integration_as_bearer since 2.4.4)"
)
_LOCK_MESSAGES = ("deadlock found when trying to get lock", "lock wait timeout exceeded")
_ERROR_KEYS = frozenset(("message", "parameters", "errors", "code", "trace"))
_RETRYABLE = (RetryableHTTPError, httpx.TransportError)
# Failures after which the request surely did not take effect, so repeating it is always safe.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class ItemRejected(Exception):
    """Magento refused one item (a 4xx, or an error body in a 200). Not a `PimsyncError`: the push
    stage records `message` as the item's error and goes on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_lock_message(message: str) -> bool:
    """A deadlock or lock-wait timeout, wrapped by the repository or raw (categories, bulk)."""
    lowered = message.lower()
    return any(text in lowered for text in _LOCK_MESSAGES)


def render_message(body: Any) -> str:
    """Magento's message with its `%1` (list) or `%name` (object) parameters substituted.

    Substitution follows PHP's `strtr`, as Magento's Placeholder renderer does: the longest
    placeholder wins, so `%10` is not read as `%1` followed by `0`. Nested `errors` are appended.
    """
    if not isinstance(body, dict):
        return body if isinstance(body, str) else orjson.dumps(body).decode()
    text = _render(str(body.get("message") or ""), body.get("parameters"))
    nested = [
        _render(str(e.get("message") or ""), e.get("parameters"))
        for e in body.get("errors") or ()
        if isinstance(e, dict)
    ]
    return f"{text} [{'; '.join(nested)}]" if nested else text


def _render(text: str, parameters: Any) -> str:
    if isinstance(parameters, list):
        pairs = {f"%{i}": value for i, value in enumerate(parameters, start=1)}
    elif isinstance(parameters, dict):
        pairs = {f"%{key}": value for key, value in parameters.items()}
    else:
        return text
    if not pairs:
        return text
    pattern = re.compile("|".join(re.escape(k) for k in sorted(pairs, key=len, reverse=True)))
    return pattern.sub(lambda match: _php_str(pairs[match.group(0)]), text)


def _php_str(value: Any) -> str:
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, str | int | float):
        return str(value)
    return orjson.dumps(value).decode()


def classify_response(response: httpx.Response) -> Any:
    """Return the decoded body of a success; raise for anything else (see the module doc)."""
    status = response.status_code
    where = f"{response.request.method} {response.request.url.path}"
    try:
        body, readable = orjson.loads(response.content), True
    except orjson.JSONDecodeError:
        body, readable = None, False
    html = "html" in response.headers.get("Content-Type", "") or response.content[:1] == b"<"
    if readable and isinstance(body, dict) and isinstance(body.get("message"), str):
        message = render_message(body)
    else:
        kind = "an HTML page" if html else "a body that is not Magento's JSON"
        message = f"{status} {response.reason_phrase} ({kind})"
    if 200 <= status < 300:
        if not readable:  # a maintenance page or a proxy answering for Magento
            raise RetryableHTTPError(response, message)
        if isinstance(body, dict) and "message" in body and body.keys() <= _ERROR_KEYS:
            raise ItemRejected(status, message)  # an error served as 200: nothing was saved
        return body
    if status in (401, 403):
        raise MagentoError(f"Magento answered {status} ({message}) for {where}: {TOKEN_HINT}")
    if 300 <= status < 400 or (status == 404 and (not readable or message == ROUTE_MISS)):
        target = response.headers.get("Location", message)
        raise MagentoError(
            f"Magento answered {status} ({target}) for {where}: check [magento] base_url "
            "(and that the store code in the URL exists)"
        )
    if status == 429 or status >= 500 or (status == 400 and is_lock_message(message)):
        raise RetryableHTTPError(response, message)
    raise ItemRejected(status, message)


def make_pool_factory(
    settings: MagentoConfig, token: str, transport: httpx.BaseTransport | None = None
) -> Callable[[int], httpx.Client]:
    """Build pools of a given size that share one base URL, TLS setup and set of headers."""
    # One SSL context for every pool: building one loads the CA bundle (~50 ms of CPU).
    verify: ssl.SSLContext
    if settings.ca_bundle is not None:
        verify = ca_bundle_context("magento", settings.ca_bundle)
    else:
        verify = httpx.create_ssl_context(verify=settings.verify_tls)
    # Users often paste the REST endpoint rather than the shop URL.
    base = str(settings.base_url).rstrip("/").removesuffix("/V1").removesuffix("/rest")

    def new_http(connections: int) -> httpx.Client:
        # Keep-alive for every connection: a pool that closes the surplus churns sockets.
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return _MagentoHttpClient(
            base_url=base,
            timeout=settings.timeout,
            transport=transport,
            verify=verify,
            limits=limits,
            headers={
                "Accept": "application/json",
                "Authorization": f"Bearer {token}",
                "User-Agent": f"pimsync/{__version__}",
            },
        )

    return new_http


class _CookiesWhenSet(httpx.Cookies):
    """A cookie jar that only looks at answers that set a cookie.

    httpx offers every answer to the jar by wrapping it, and its request, in urllib objects:
    about 45 us of CPU a request here, for answers that set nothing in a token-authenticated API
    (5% of a product push's CPU, measured with py-spy). An answer with a Set-Cookie is still
    read as httpx reads it, so what the jar holds is the same.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class _MagentoHttpClient(httpx.Client):
    """`httpx.Client` with `_CookiesWhenSet` as its jar (httpx takes no jar class of ours)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cookies = kwargs.get("cookies")

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._jar = _CookiesWhenSet(cookies)


class Sender:
    """Sends JSON requests on one pool, retrying 429, 5xx, deadlocks and network failures.

    A `Retry-After` is honoured up to `max_retry_wait` seconds; otherwise the wait is a jittered
    exponential backoff (at most 30 s, or `max_retry_wait` if smaller).
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = MAX_ATTEMPTS,
        max_retry_wait: float = MAX_RETRY_WAIT,
    ) -> None:
        self.http = http
        self.max_attempts = max_attempts
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._wait = RetryAfterWait(max_retry_wait, MAX_BACKOFF)
        # Paths are joined to the base URL here, as one string that httpx parses once: given
        # a relative path, httpx parses it, then the joined URL again (about 35 us a request).
        base = http.base_url
        self._base = str(base).rstrip("/") + "/" if base.is_absolute_url else None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        recover: Callable[[], Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send with retries. With `recover`, the write is not idempotent: once an attempt may
        have taken effect, each later attempt first asks `recover` whether it did (after the
        backoff, which gives Magento time to finish)."""
        content = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if content is not None else None
        url = self._url(path)
        uncertain = False

        def attempt() -> Any:
            nonlocal uncertain
            if uncertain and recover is not None:
                found = recover()
                if found is not None:
                    return found
            try:
                response = self.http.request(
                    method,
                    url,
                    content=content,
                    params=params,
                    headers=headers,
                    timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
                )
                return classify_response(response)
            except _RETRYABLE as exc:
                uncertain = uncertain or not _surely_not_applied(exc)
                raise

        retrying = Retrying(
            retry=retry_if_exception_type(_RETRYABLE),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=False,
        )
        try:
            return retrying(attempt)
        except RetryError as exc:
            raise self._unavailable(method, path, exc.last_attempt.exception()) from None

    def _url(self, path: str) -> str:
        """`path` on the client's base URL, as httpx would join them (the base ends in "/")."""
        if self._base is None or not path.startswith("/") or path.startswith("//"):
            return path
        return self._base + path.lstrip("/")

    def search(self, path: str, filters: dict[str, Any]) -> list[Any]:
        """Every row of a searchCriteria list; pages end by `total_count` (Magento repeats the
        last page for a page number past the end)."""
        params: dict[str, str] = {"searchCriteria[pageSize]": str(PAGE_SIZE)}
        for i, (name, value) in enumerate(filters.items()):
            prefix = f"searchCriteria[filter_groups][{i}][filters][0]"
            params |= {f"{prefix}[field]": name, f"{prefix}[value]": str(value)}
            params[f"{prefix}[condition_type]"] = "eq"
        rows: list[Any] = []
        page = 1
        while True:
            params["searchCriteria[currentPage]"] = str(page)
            body = expect_object(self.call("GET", path, params=params), "items")
            rows += expect_rows(body["items"])
            if not body["items"] or page * PAGE_SIZE >= int(body.get("total_count") or 0):
                return rows
            page += 1

    def get_or_none(self, path: str) -> Any:
        """GET `path`; a 404 answers None."""
        try:
            return self.call("GET", path)
        except ItemRejected as exc:
            if exc.status == 404:
                return None
            raise

    def _unavailable(self, method: str, path: str, exc: BaseException | None) -> MagentoError:
        if isinstance(exc, RetryableHTTPError):
            reason = f"answered {exc.message}"
        else:
            reason = f"could not be reached ({type(exc).__name__}: {exc or 'no detail'})"
        return MagentoError(
            f"Magento unavailable: {reason} for {method} {path} after {self.max_attempts} "
            "attempts; check that Magento is up and [magento] base_url is right"
        )


def _surely_not_applied(exc: BaseException) -> bool:
    """429 and lock errors roll back; a connection that never opened sent nothing."""
    if isinstance(exc, RetryableHTTPError):
        return exc.status_code in (400, 429)
    return isinstance(exc, _NOT_SENT)


def expect_object(body: Any, key: str) -> dict[str, Any]:
    """The entity Magento answered, or `ItemRejected` when the answer is something else."""
    if not isinstance(body, dict) or key not in body:
        raise ItemRejected(200, f"Magento answered without {key!r}: {str(body)[:200]}")
    return body


def expect_rows(body: Any) -> list[Any]:
    """The objects of a list answer, or `ItemRejected` when the answer is not a list."""
    if not isinstance(body, list):
        raise ItemRejected(200, f"Magento answered {str(body)[:200]} where a list was expected")
    return [row for row in body if isinstance(row, dict)]


def parse_id(value: Any) -> int | None:
    """An id as Magento may send it (215 or "215"), or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def expect_id(value: Any) -> int:
    found = parse_id(value)
    if found is None:
        raise ItemRejected(200, f"Magento answered {value!r} where an id was expected")
    return found
