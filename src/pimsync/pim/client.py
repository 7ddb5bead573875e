"""PimClient: reads an Akeneo PIM over its REST API.

OAuth password grant with refresh, `_links.next` pagination, the `updated` search filter, and
retries on 408/429/5xx/transport errors (honouring `Retry-After`). Every failure that stops a run
becomes a one-line `PimError` naming the setting to fix. Listings yield `Page`s of raw records,
validated record by record when they are read (records.py).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import orjson
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)

from pimsync import __version__
from pimsync.config import PimConfig
from pimsync.errors import FatalHTTPError, PimError, RetryableHTTPError
from pimsync.pim.models import (
    Attribute,
    AttributeOption,
    Category,
    Family,
    FamilyVariant,
    MediaFile,
    PimRecord,
    Product,
    ProductModel,
)
from pimsync.pim.pagination import NextLinkPaginator
from pimsync.pim.records import MAX_RECORD_BYTES, Item, Page, lenient_json
from pimsync.retry import RetryAfterWait, log_retry
from pimsync.tls import ca_bundle_context

API = "/api/rest/v1"
TOKEN_PATH = "/api/oauth/v1/token"
# Renew the access token this long before Akeneo says it expires.
TOKEN_MARGIN_SECONDS = 60.0
PRODUCT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class MalformedResponseError(Exception):
    """A 2xx answer whose body is not the JSON we asked for (truncated, or an HTML page)."""


def classify_response(response: httpx.Response, content: bytes) -> None:
    """Raise for any answer that is not a success: retryable (408, 429, 5xx) or fatal (4xx)."""
    status = response.status_code
    if status < 400:
        return
    message = _error_message(response, content)
    if status in (408, 429) or status >= 500:
        raise RetryableHTTPError(response, message)
    raise FatalHTTPError(response, message)


def _error_message(response: httpx.Response, content: bytes) -> str:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return f"{response.status_code} {response.reason_phrase}".strip()
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return f"{response.status_code} {body['message']}"
    return f"{response.status_code} {response.reason_phrase}".strip()


class PimClient:
    """An Akeneo REST client. Build it with `from_config`; tests inject a transport."""

    def __init__(
        self,
        http: httpx.Client,
        settings: PimConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = http
        self.settings = settings
        self.timezone = ZoneInfo(settings.timezone)
        self._sleep = sleep
        self._access_token: str | None = None
        self._refresh_token: str | None = None
        self._token_expires_at = 0.0
        self._wait = RetryAfterWait(settings.max_retry_wait)
        # One controller for every request (tenacity keeps its per-call state thread-local): a
        # controller per request formed a reference cycle that kept the parsed page alive until
        # the cyclic GC ran.
        self._retry = Retrying(
            retry=retry_if_exception_type(
                (RetryableHTTPError, httpx.TransportError, MalformedResponseError)
            ),
            stop=stop_after_attempt(settings.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=False,
        )
        self.requests_sent = 0

    @classmethod
    def from_config(
        cls,
        settings: PimConfig,
        transport: httpx.BaseTransport | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> PimClient:
        if settings.base_url is None:
            raise PimError("no PIM configured: set [pim] base_url (or PIMSYNC_PIM__BASE_URL)")
        verify: ssl.SSLContext | bool = settings.verify_tls
        if settings.ca_bundle is not None:
            verify = ca_bundle_context("pim", settings.ca_bundle)
        http = httpx.Client(
            base_url=str(settings.base_url).rstrip("/"),
            timeout=settings.timeout,
            transport=transport,
            verify=verify,
            headers={"Accept": "application/json", "User-Agent": f"pimsync/{__version__}"},
        )
        return cls(http, settings, sleep=sleep)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PimClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- catalog structure ---------------------------------------------------------------------

    def server_now(self) -> datetime:
        """The PIM's own clock (its `Date` header), in UTC. Watermarks come from here."""
        response = self._request("GET", API, authenticated=False)
        date = response.headers.get("Date")
        if not date:
            raise PimError(
                "the PIM sent no Date header, so no safe watermark can be taken; "
                "check that no proxy in front of [pim] base_url strips it"
            )
        try:
            return parsedate_to_datetime(date).astimezone(UTC)
        except (TypeError, ValueError):
            raise PimError(f"the PIM sent an unreadable Date header {date!r}") from None

    def attributes(self, updated_since: datetime | None = None) -> Iterator[Page]:
        yield from self._list(f"{API}/attributes", Attribute, self._structure_filter(updated_since))

    def attribute_options(self, attribute: str) -> Iterator[Page]:
        path = f"{API}/attributes/{quote(attribute)}/options"
        yield from self._list(path, AttributeOption, {}, extra={"attribute": attribute})

    def families(self, updated_since: datetime | None = None) -> Iterator[Page]:
        yield from self._list(f"{API}/families", Family, self._structure_filter(updated_since))

    def family_variants(self, family: str) -> Iterator[Page]:
        path = f"{API}/families/{quote(family)}/variants"
        yield from self._list(path, FamilyVariant, {}, extra={"family": family})

    def categories(self, updated_since: datetime | None = None) -> Iterator[Page]:
        yield from self._list(f"{API}/categories", Category, self._structure_filter(updated_since))

    # -- products --------------------------------------------------------------------------------

    def product_models(self, updated_since: datetime | None = None) -> Iterator[Page]:
        params = self._product_filter(updated_since)
        yield from self._list(f"{API}/product-models", ProductModel, params)

    def products(self, updated_since: datetime | None = None) -> Iterator[Page]:
        params = self._product_filter(updated_since)
        yield from self._list(f"{API}/{self.settings.product_endpoint}", Product, params)

    def media_files(self) -> Iterator[Page]:
        yield from self._list(f"{API}/media-files", MediaFile, {})

    def media_file(self, code: str) -> Item:
        """One media file's metadata; the code keeps its slashes, as Akeneo's route expects."""
        body = self._get_json(f"{API}/media-files/{quote(code, safe='/')}", None)
        return Page(MediaFile, [body], suspect=True)[0]

    def download(self, url: str) -> bytes:
        """A media file's bytes (from its `_links.download.href`), with the usual retries."""
        answer: Answer = self._retrying(url, lambda: self._send("GET", url, authenticated=True))
        return answer.content

    # -- plumbing --------------------------------------------------------------------------------

    def _structure_filter(self, since: datetime | None) -> dict[str, str]:
        # Catalog-structure filters take ISO-8601 with an offset (reference §5).
        if since is None:
            return {}
        value = since.astimezone(self.timezone).isoformat(timespec="seconds")
        return {"search": _search({"updated": [{"operator": ">", "value": value}]})}

    def _product_filter(self, since: datetime | None) -> dict[str, str]:
        # Product filters take "YYYY-MM-DD hh:mm:ss" in the PIM server's time zone (reference §8).
        params = {"pagination_type": "search_after"}
        if since is not None:
            value = since.astimezone(self.timezone).strftime(PRODUCT_DATE_FORMAT)
            params["search"] = _search({"updated": [{"operator": ">", "value": value}]})
        return params

    def _list(
        self,
        path: str,
        model: type[PimRecord],
        params: dict[str, str],
        extra: dict[str, str] | None = None,
    ) -> Iterator[Page]:
        """Yield each page of a list endpoint as validated items, following `_links.next`."""
        paginator = NextLinkPaginator()
        url: str = path
        query: dict[str, str] | None = {**params, "limit": str(self.settings.page_size)}
        while True:
            # Records kept as sent are parsed where the page is prepared (records.Page), often
            # in another process: here only the envelope is read, for the next page's link.
            body = self._get_json(url, query, envelope_only=not extra)
            if isinstance(body, _Envelope):
                next_url = paginator.follow(body, url)
                yield Page(model, None, content=body.content, source=path)
            else:
                page = paginator.parse(body, url)
                next_url = page.next_url
                # Only a page that could hold a record pimsync cannot stage is looked at closely.
                suspect = isinstance(body, _LenientBody) or len(body.content) > MAX_RECORD_BYTES
                raws = page.items
                if extra:
                    raws = [{**raw, **extra} if isinstance(raw, dict) else raw for raw in raws]
                content = None if suspect or extra else body.content
                yield Page(model, raws, suspect=suspect, content=content)
            if next_url is None:
                return
            url, query = next_url, None

    def _get_json(
        self, url: str, params: dict[str, str] | None, *, envelope_only: bool = False
    ) -> Any:
        """The answer to a GET, parsed; with `envelope_only`, a list page's envelope alone
        (`_Envelope`) when the answer is laid out as Akeneo lays it out and is not oversized."""

        def attempt() -> Any:
            answer = self._send("GET", url, params=params, authenticated=True)
            content = answer.content
            if envelope_only and len(content) <= MAX_RECORD_BYTES:
                envelope = _list_envelope(content)
                if envelope is not None:
                    return _Envelope(envelope, content)
            try:
                body = orjson.loads(content)
            except orjson.JSONDecodeError:
                body = lenient_json(content)
                if not isinstance(body, dict):
                    kind = answer.response.headers.get("Content-Type", "unknown content")
                    raise MalformedResponseError(
                        f"the PIM answered {url} with a body that is not JSON ({kind})"
                    ) from None
                return _LenientBody(body, content)
            return _Body(body, content) if isinstance(body, dict) else body

        return self._retrying(url, attempt)

    def _request(self, method: str, url: str, *, authenticated: bool) -> httpx.Response:
        answer: Answer = self._retrying(
            url, lambda: self._send(method, url, authenticated=authenticated)
        )
        return answer.response

    def _retrying(self, url: str, call: Callable[[], Any]) -> Any:
        try:
            return self._retry(call)
        except RetryError as exc:
            raise self._unavailable(url, exc.last_attempt.exception()) from None
        except FatalHTTPError as exc:
            raise self._refused(url, exc) from None

    def _send(
        self,
        method: str,
        url: str,
        *,
        authenticated: bool,
        params: dict[str, str] | None = None,
    ) -> Answer:
        headers = {"Authorization": f"Bearer {self._token()}"} if authenticated else {}
        answer = self._exchange(method, url, params, headers)
        if answer.response.status_code == 401 and authenticated:
            # Akeneo's own client renews the token on any 401 and replays the request once.
            self._renew_token()
            headers = {"Authorization": f"Bearer {self._token()}"}
            answer = self._exchange(method, url, params, headers)
        classify_response(answer.response, answer.content)
        return answer

    def _exchange(
        self, method: str, url: str, params: dict[str, str] | None, headers: dict[str, str]
    ) -> Answer:
        """One request, its body read as a stream and handed back beside the response.

        An httpx response and its stream refer to each other, so a response lives until the
        cyclic GC finds it; one that kept its body would keep a whole page with it (300 KB of
        products). Read this way, the response never holds the body, which is freed as soon as
        the page is parsed.
        """
        request = self.http.build_request(method, url, params=params, headers=headers)
        response = self.http.send(request, stream=True)
        self.requests_sent += 1
        try:
            content = b"".join(response.iter_bytes())
        finally:
            response.close()
        return Answer(response, content)

    def _token(self) -> str:
        if self._access_token is None or time.monotonic() >= self._token_expires_at:
            self._renew_token()
        assert self._access_token is not None
        return self._access_token

    def _renew_token(self) -> None:
        if self._refresh_token is not None:
            try:
                self._grant({"grant_type": "refresh_token", "refresh_token": self._refresh_token})
                return
            except FatalHTTPError:
                pass  # an expired refresh token: fall back to the password grant
        settings = self.settings
        missing = [
            key
            for key, value in (
                ("client_id", settings.client_id),
                ("secret", settings.secret),
                ("username", settings.username),
                ("password", settings.password),
            )
            if not value
        ]
        if missing:
            raise PimError(
                "PIM credentials are incomplete: set "
                + ", ".join(f"[pim] {key}" for key in missing)
            )
        assert settings.password is not None
        try:
            self._grant(
                {
                    "grant_type": "password",
                    "username": settings.username or "",
                    "password": settings.password.get_secret_value(),
                }
            )
        except FatalHTTPError as exc:
            raise PimError(
                f"the PIM refused the credentials ({exc.message}): "
                "check [pim] client_id, secret, username and password"
            ) from None

    def _grant(self, body: dict[str, str]) -> None:
        settings = self.settings
        assert settings.secret is not None
        auth = httpx.BasicAuth(settings.client_id or "", settings.secret.get_secret_value())

        def attempt() -> httpx.Response:
            response = self.http.post(TOKEN_PATH, json=body, auth=auth)
            self.requests_sent += 1
            classify_response(response, response.content)
            return response

        try:
            response = self._retrying_token(attempt)
            payload = orjson.loads(response.content)
            self._access_token = str(payload["access_token"])
            self._refresh_token = payload.get("refresh_token")
            expires_in = float(payload.get("expires_in") or 3600)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise PimError("the PIM token endpoint sent an unreadable answer") from None
        self._token_expires_at = time.monotonic() + max(expires_in - TOKEN_MARGIN_SECONDS, 1.0)

    def _retrying_token(self, attempt: Callable[[], httpx.Response]) -> httpx.Response:
        try:
            result: httpx.Response = Retrying(
                retry=retry_if_exception_type((RetryableHTTPError, httpx.TransportError)),
                stop=stop_after_attempt(self.settings.max_attempts),
                wait=self._wait,
                sleep=self._sleep,
                before_sleep=log_retry,
                reraise=False,
            )(attempt)
            return result
        except RetryError as exc:
            raise self._unavailable(TOKEN_PATH, exc.last_attempt.exception()) from None

    def _unavailable(self, url: str, exc: BaseException | None) -> PimError:
        attempts = self.settings.max_attempts
        if isinstance(exc, RetryableHTTPError):
            reason = f"answered {exc.message}"
        elif isinstance(exc, MalformedResponseError):
            return PimError(f"{exc} after {attempts} attempts")
        elif isinstance(exc, httpx.TransportError):
            reason = f"could not be reached ({type(exc).__name__}: {exc or 'no detail'})"
            return PimError(
                f"the PIM {reason} after {attempts} attempts at {url}; check [pim] base_url"
            )
        else:
            reason = f"failed ({exc})"
        return PimError(f"the PIM {reason} after {attempts} attempts at {url}")

    def _refused(self, url: str, exc: FatalHTTPError) -> PimError:
        path = httpx.URL(url).path
        if exc.status_code == 401:
            setting = "[pim] client_id, secret, username and password"
        elif exc.status_code == 403:
            setting = "the ACLs of the role of [pim] username in the PIM"
        elif exc.status_code == 404 and "products" in path:
            setting = "[pim] base_url and [pim] product_endpoint (products-uuid needs Akeneo 7+)"
        elif exc.status_code == 404:
            setting = "[pim] base_url"
        else:
            setting = "the request pimsync built; this may be a bug, please report it"
        return PimError(f"the PIM answered {exc.message} for {path}: check {setting}")

    def authenticate(self) -> None:
        """Ask for a new token with the password grant now (`pimsync check` proves the
        credentials so, reading nothing); a refresh token held from before is not used."""
        self._refresh_token = None
        self._renew_token()


@dataclass(frozen=True, slots=True)
class Answer:
    """A response and its body, which the response itself does not keep (`_exchange`)."""

    response: httpx.Response
    content: bytes


class _Body(dict[str, Any]):
    """A list page as parsed, with the answer it came from."""

    def __init__(self, body: dict[str, Any], content: bytes) -> None:
        super().__init__(body)
        self.content = content


class _LenientBody(_Body):
    """A page only Python's own JSON parser could read: it holds text that is not valid UTF-8
    (raw bytes, lone surrogate escapes). The records carrying such text are quarantined."""


class _Envelope(_Body):
    """A list page of which only the envelope (`_links`, counts) was parsed: its records are
    still in `content`."""


# Where Akeneo's list answers keep their records: last, after the envelope.
_EMBEDDED_KEY = b',"_embedded":'
_ITEMS_START = b',"_embedded":{"items":['
_ITEMS_END = b"]}}"


def _list_envelope(content: bytes) -> dict[str, Any] | None:
    """A list answer's envelope parsed without its records, or None when the answer is not
    laid out as `{<envelope>,"_embedded":{"items":[...]}}`.

    The first `,"_embedded":` in the bytes cannot lie inside a string (a quote there would be
    escaped), and the envelope before it, closed with one brace, parses only when that key sits
    at the top level. An answer cut short does not end as a list page ends; one damaged in the
    middle is refused where its records are read (records.listing_items).
    """
    start = content.find(_EMBEDDED_KEY)
    if (
        start < 0
        or not content.startswith(_ITEMS_START, start)
        or not content[-64:].rstrip().endswith(_ITEMS_END)
    ):
        return None
    try:
        envelope = orjson.loads(content[:start] + b"}")
    except orjson.JSONDecodeError:
        return None
    return envelope if isinstance(envelope, dict) else None


def _search(filters: dict[str, Any]) -> str:
    return orjson.dumps(filters).decode()
