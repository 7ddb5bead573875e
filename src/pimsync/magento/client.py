"""MagentoClient: writes the catalog into Magento 2.4 / Adobe Commerce over REST.

Every URL carries a store code (`/rest/<store>/V1/...`, `all` by default), since a plain
`/rest/V1` update writes store-view overrides on the default store. Sending, retries and the
meaning of an answer live in `pimsync.magento.http`; a refused item raises its `ItemRejected`.
Writes that are not idempotent (media, options, category creation) check what Magento already
holds before they repeat a request whose fate is unknown.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from pimsync.config import MagentoConfig
from pimsync.errors import MagentoError
from pimsync.magento import bulk
from pimsync.magento.http import (
    MAX_ATTEMPTS,
    MAX_RETRY_WAIT,
    ROUTE_MISS,
    ItemRejected,
    Sender,
    expect_id,
    expect_object,
    expect_rows,
    is_lock_message,
    make_pool_factory,
    parse_id,
)
from pimsync.magento.models import BulkSubmission, OperationResult, StoreView, Website

# An image upload "might take 30 seconds or so" (reference §9): give it more than a save.
MEDIA_TIMEOUT = 120.0
PRODUCT_ENTITY_TYPE = 4
URL_KEY_TAKEN = "URL key for specified store already exists"


@dataclass
class _Shared:
    """State every worker's client shares: per-key write locks and bulks awaiting results."""

    guard: threading.Lock = field(default_factory=threading.Lock)
    locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    pending: dict[str, bulk.Pending] = field(default_factory=dict)
    pools: list[httpx.Client] = field(default_factory=list)  # handed out by `for_worker`

    def lock(self, kind: str, key: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault((kind, key.strip().lower()), threading.Lock())


class MagentoClient:
    """A thread-safe Magento REST client. Build it with `from_config`; tests inject a transport.

    Option adds and configurable links are serialised per attribute / parent SKU (Magento
    re-saves the whole attribute or link list, so parallel adds lose writes).
    """

    def __init__(
        self,
        http: httpx.Client,
        settings: MagentoConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = MAX_ATTEMPTS,
        max_retry_wait: float = MAX_RETRY_WAIT,
    ) -> None:
        self.http = http
        self.settings = settings
        self.max_attempts = max_attempts
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._sender = Sender(
            http, sleep=sleep, max_attempts=max_attempts, max_retry_wait=max_retry_wait
        )
        self._shared = _Shared()
        self._new_http: Callable[[], httpx.Client] | None = None
        self._owns_pools = False

    @classmethod
    def from_config(
        cls,
        settings: MagentoConfig,
        transport: httpx.BaseTransport | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> MagentoClient:
        if settings.base_url is None:
            raise MagentoError(
                "no Magento configured: set [magento] base_url (or PIMSYNC_MAGENTO__BASE_URL)"
            )
        if settings.token is None or not settings.token.get_secret_value().strip():
            raise MagentoError("no Magento token: set [magento] token (PIMSYNC_MAGENTO__TOKEN)")
        new_http = make_pool_factory(settings, settings.token.get_secret_value().strip(), transport)
        client = cls(
            new_http(settings.concurrency),
            settings,
            sleep=sleep,
            max_attempts=settings.max_attempts,
            max_retry_wait=settings.max_retry_wait,
        )
        if transport is None:  # an injected transport is the pool: workers share it
            # A worker sends one request at a time; the spare covers a socket being closed.
            client._new_http, client._owns_pools = (lambda: new_http(2)), True
        return client

    def for_worker(self) -> MagentoClient:
        """A client with its own small connection pool, sharing locks and pending bulks.

        Use one per worker thread: httpcore scans every connection of a pool under its lock
        on each request, so 32 threads on one pool reached ~59% of concurrency/latency where a
        pool per worker reached ~71% (tests/bench/bench_magento_client.py; both ~90% at 8).
        Without a pool factory (an injected client or transport) this answers `self`, which
        is thread-safe too.
        """
        if self._new_http is None:
            return self
        http = self._new_http()
        worker = MagentoClient(
            http,
            self.settings,
            sleep=self._sleep,
            max_attempts=self.max_attempts,
            max_retry_wait=self.max_retry_wait,
        )
        worker._shared, worker._new_http = self._shared, self._new_http
        with self._shared.guard:
            self._shared.pools.append(http)
        return worker

    def close(self) -> None:
        """Close this client's pool; the client `from_config` built also closes its workers'."""
        self.http.close()
        if self._owns_pools:
            with self._shared.guard:
                pools, self._shared.pools = self._shared.pools, []
            for pool in pools:
                pool.close()

    def __enter__(self) -> MagentoClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MagentoClient({self.http.base_url!s})"

    # -- stores --------------------------------------------------------------------------------

    def store_views(self) -> list[StoreView]:
        """Store views without the admin store (id 0)."""
        path = _url("all", "store/storeViews")
        with _readable("store views", path):
            rows = expect_rows(self._call("GET", path))
            return [StoreView.model_validate(r) for r in rows if r.get("id") != 0]

    def websites(self) -> list[Website]:
        path = _url("all", "store/websites")
        with _readable("websites", path):
            rows = expect_rows(self._call("GET", path))
            return [Website.model_validate(r) for r in rows if r.get("id") != 0]

    # -- attribute sets --------------------------------------------------------------------------

    def attribute_sets(self) -> dict[str, int]:
        """Product attribute sets, name -> id (other entity types also have a "Default")."""
        resource = "products/attribute-sets/sets/list"
        with _readable("attribute sets", _url("all", resource)):
            rows = self._search(resource, {})
            return {
                str(r["attribute_set_name"]): int(r["attribute_set_id"])
                for r in rows
                if int(r.get("entity_type_id") or PRODUCT_ENTITY_TYPE) == PRODUCT_ENTITY_TYPE
            }

    def create_attribute_set(self, name: str, skeleton_id: int = 4) -> int:
        """Create a product set copying `skeleton_id`'s groups; an existing name answers its id."""
        body = {"attributeSet": {"attribute_set_name": name, "sort_order": 0}}
        try:
            created = self._call(
                "POST", _url("all", "products/attribute-sets"), {**body, "skeletonId": skeleton_id}
            )
        except ItemRejected as exc:
            if "already exists" not in exc.message:
                raise
            existing = {k.lower(): v for k, v in self.attribute_sets().items()}
            if name.strip().lower() not in existing:
                raise
            return existing[name.strip().lower()]
        return expect_id(expect_object(created, "attribute_set_id")["attribute_set_id"])

    def attribute_groups(self, set_id: int) -> dict[str, int]:
        rows = self._search("products/attribute-sets/groups/list", {"attribute_set_id": set_id})
        return {str(r["attribute_group_name"]): int(r["attribute_group_id"]) for r in rows}

    def assign_attribute(
        self, set_id: int, group_id: int, attribute_code: str, sort_order: int = 0
    ) -> None:
        body = {
            "attributeSetId": set_id,
            "attributeGroupId": group_id,
            "attributeCode": attribute_code,
            "sortOrder": sort_order,
        }
        try:
            self._call("POST", _url("all", "products/attribute-sets/attributes"), body)
        except ItemRejected as exc:
            if "already" not in exc.message.lower():  # "already assigned/exists": the goal holds
                raise

    # -- attributes and options ------------------------------------------------------------------

    def get_attribute(self, code: str) -> dict[str, Any] | None:
        found = self._get_or_none(_url("all", f"products/attributes/{_q(code)}"))
        return None if found is None else expect_object(found, "attribute_code")

    def save_attribute(self, payload: dict[str, Any], *, exists: bool) -> dict[str, Any]:
        """Create (POST) or update (PUT) an attribute; a create that finds it exists updates."""
        code = str(payload.get("attribute_code") or "")
        if not exists:
            try:
                return expect_object(
                    self._call("POST", _url("all", "products/attributes"), {"attribute": payload}),
                    "attribute_code",
                )
            except ItemRejected as exc:
                if not code or "already exists" not in exc.message:
                    raise
        if "attribute_id" not in payload:
            # ProductAttributeRepository::save only updates when attribute_id is set [inferred].
            current = self.get_attribute(code)
            if current is None:
                raise ItemRejected(404, f'The attribute "{code}" does not exist in Magento.')
            payload = {**payload, "attribute_id": current["attribute_id"]}
        path = _url("all", f"products/attributes/{_q(code)}")
        return expect_object(self._call("PUT", path, {"attribute": payload}), "attribute_code")

    def attribute_options(self, code: str) -> list[dict[str, Any]]:
        """Options with admin labels (read through `all`), without the blank first entry."""
        rows = self._call("GET", _url("all", f"products/attributes/{_q(code)}/options"))
        return [r for r in expect_rows(rows) if str(r.get("value", "")) != ""]

    def add_option(self, code: str, option: dict[str, Any]) -> int:
        """Add an option; answers its id whatever the version returns (an existing label too)."""
        label = str(option.get("label") or "").strip()

        def find() -> int | None:
            matches = [
                expect_id(o["value"])
                for o in self.attribute_options(code)
                if str(o.get("label") or "").strip().lower() == label.lower()
            ]
            return max(matches) if matches else None

        path = _url("all", f"products/attributes/{_q(code)}/options")
        with self._shared.lock("option", code):
            try:
                result = self._call("POST", path, {"option": option}, recover=find)
            except ItemRejected as exc:
                found = find() if "already exists" in exc.message else None
                if found is None:
                    raise
                return found
            # 2.4 answers "215"; 2.3 "id_new_option"; 2.1-2.2 true: then look the label up.
            option_id = parse_id(result)
            if option_id is None:
                option_id = find()
            if option_id is None:
                raise ItemRejected(200, f'option "{label}" was added but is not listed')
            return option_id

    def update_option(self, code: str, option_id: int, option: dict[str, Any]) -> None:
        """PUT an option. The route exists since 2.4.7; before, the item is rejected (the run
        goes on: a label left unchanged does not justify stopping the push)."""
        path = _url("all", f"products/attributes/{_q(code)}/options/{option_id}")
        try:
            self._call("PUT", path, {"option": option})
        except MagentoError as exc:
            if ROUTE_MISS not in exc.message:
                raise
            raise ItemRejected(404, "option update needs Magento 2.4.7+ (no such route)") from None

    # -- categories ------------------------------------------------------------------------------

    def create_category(self, payload: dict[str, Any], store: str = "all") -> dict[str, Any]:
        """Create a category; if a lost answer hides the outcome, look for it before repeating."""

        def find() -> dict[str, Any] | None:
            filters: dict[str, Any] = {"name": payload.get("name")}
            if payload.get("parent_id") is not None:
                filters["parent_id"] = payload["parent_id"]
            rows = self._search("categories/list", filters, store)
            return max(rows, key=lambda r: int(r["id"])) if rows else None

        body = {"category": payload}
        try:
            created = self._call("POST", _url(store, "categories"), body, recover=find)
        except ItemRejected as exc:
            # A create whose answer was lost in an earlier run (the lookup failing too) left the
            # category in Magento: its URL key is now taken, and a repeat can never succeed.
            found = find() if URL_KEY_TAKEN in exc.message else None
            if found is None:
                raise
            return found
        return expect_object(created, "id")

    def update_category(
        self, category_id: int, payload: dict[str, Any], store: str
    ) -> dict[str, Any]:
        body = {"category": {**payload, "id": category_id}}
        return expect_object(
            self._call("PUT", _url(store, f"categories/{category_id}"), body), "id"
        )

    def move_category(self, category_id: int, parent_id: int, after_id: int | None = None) -> None:
        body: dict[str, Any] = {"parentId": parent_id}
        if after_id is not None:
            body["afterId"] = after_id
        self._call("PUT", _url("all", f"categories/{category_id}/move"), body)

    def delete_category(self, category_id: int) -> None:
        """Delete a category (and its subtree); one that is already gone counts as deleted."""
        try:
            self._call("DELETE", _url("all", f"categories/{category_id}"))
        except ItemRejected as exc:
            if exc.status != 404:
                raise

    def disable_category(self, category_id: int) -> None:
        """Set is_active false on every store view; a category that is gone is left alone."""
        try:
            self.update_category(category_id, {"is_active": False}, "all")
        except ItemRejected as exc:
            if exc.status != 404:
                raise

    def get_category(self, category_id: int, store: str = "all") -> dict[str, Any] | None:
        found = self._get_or_none(_url(store, f"categories/{category_id}"))
        return None if found is None else expect_object(found, "id")

    # -- products --------------------------------------------------------------------------------

    def save_product(self, payload: dict[str, Any], store: str = "all") -> dict[str, Any]:
        """Upsert by SKU: PUT `/V1/products/{sku}` with the same SKU in the body (an upsert, so
        repeating it after a lost answer is safe)."""
        sku = _sku(payload)
        body = {"product": {**payload, "sku": sku}}
        return expect_object(self._call("PUT", _url(store, f"products/{_q(sku)}"), body), "sku")

    def get_product(self, sku: str, store: str = "all") -> dict[str, Any] | None:
        found = self._get_or_none(_url(store, f"products/{_q(sku)}"))
        return None if found is None else expect_object(found, "sku")

    def delete_product(self, sku: str) -> None:
        """Delete a product; one that is already gone counts as deleted."""
        try:
            self._call("DELETE", _url("all", f"products/{_q(sku)}"))
        except ItemRejected as exc:
            if exc.status != 404:
                raise

    def disable_product(self, sku: str) -> None:
        """Set status 2 globally; a SKU Magento does not have is left alone."""
        try:
            self.save_product({"sku": sku, "status": 2})
        except ItemRejected:
            # A PUT of an unknown SKU tries to create it and fails on the missing name or set.
            if self.get_product(sku) is not None:
                raise

    # -- configurable products -------------------------------------------------------------------

    def add_configurable_option(self, sku: str, option: dict[str, Any]) -> int:
        """Make an attribute configurable on `sku`; an attribute already there answers its id."""
        wanted = str(option.get("attribute_id") or "")

        def find() -> int | None:
            ids = [
                expect_id(o["id"])
                for o in self.configurable_options(sku)
                if str(o.get("attribute_id")) == wanted
            ]
            return ids[0] if ids else None

        path = _url("all", f"configurable-products/{_q(sku)}/options")
        with self._shared.lock("configurable", sku):
            try:
                return expect_id(self._call("POST", path, {"option": option}, recover=find))
            except ItemRejected as exc:
                found = find() if "already has this option" in exc.message else None
                if found is None:
                    raise
                return found

    def configurable_options(self, sku: str) -> list[dict[str, Any]]:
        return expect_rows(
            self._call("GET", _url("all", f"configurable-products/{_q(sku)}/options/all"))
        )

    def add_child(self, parent_sku: str, child_sku: str) -> None:
        path = _url("all", f"configurable-products/{_q(parent_sku)}/child")
        with self._shared.lock("configurable", parent_sku):
            try:
                self._call("POST", path, {"childSku": child_sku})
            except ItemRejected as exc:
                if exc.message != "The product is already attached.":
                    raise

    def children(self, sku: str) -> list[str]:
        rows = self._call("GET", _url("all", f"configurable-products/{_q(sku)}/children"))
        return [str(r["sku"]) for r in expect_rows(rows)]

    # -- media -----------------------------------------------------------------------------------

    def media(self, sku: str) -> list[dict[str, Any]]:
        return expect_rows(self._call("GET", _url("all", f"products/{_q(sku)}/media")))

    def add_media(self, sku: str, entry: dict[str, Any]) -> int:
        """Add an image. Not idempotent (each POST adds a copy), so after a lost answer or a 5xx
        the gallery is re-read and an entry with the same label or file name counts as done."""
        path = _url("all", f"products/{_q(sku)}/media")
        timeout = max(self.settings.timeout, MEDIA_TIMEOUT)
        body = {"entry": entry}
        found = partial(self.find_media, sku, entry)
        return expect_id(self._call("POST", path, body, recover=found, timeout=timeout))

    def find_media(self, sku: str, entry: dict[str, Any]) -> int | None:
        """The gallery entry of `sku` that an upload of `entry` made, if there is one."""
        label = entry.get("label")
        content = entry.get("content")
        name = str(content.get("name") or "") if isinstance(content, dict) else ""
        # Magento stores "front.png" as "/f/r/front.png" ("front_1.png" when the name is taken),
        # after replacing characters outside [a-z0-9_.-] with "_" (Uploader::getCorrectFileName).
        stem = name.rsplit(".", 1)[0]
        safe = re.sub(r"[^a-z0-9_.\-]+", "_", stem, flags=re.IGNORECASE)
        stems = "|".join(re.escape(s) for s in {stem, safe})
        same_file = re.compile(rf"(?:{stems})(_\d+)?(\.\w+)?", re.IGNORECASE)
        ids = [
            expect_id(e["id"])
            for e in self.media(sku)
            if (label and e.get("label") == label)
            or (name and same_file.fullmatch(str(e.get("file") or "").rsplit("/", 1)[-1]))
        ]
        return max(ids) if ids else None

    def delete_media(self, sku: str, entry_id: int) -> None:
        """Remove an image; one that is already gone counts as removed."""
        try:
            self._call("DELETE", _url("all", f"products/{_q(sku)}/media/{entry_id}"))
        except ItemRejected as exc:
            if exc.status != 404:
                raise

    # -- bulk ------------------------------------------------------------------------------------

    def bulk_submit(
        self,
        store: str,
        route: str,
        items: list[dict[str, Any]],
        method: Literal["POST", "PUT"] = "POST",
    ) -> BulkSubmission:
        """Queue `items` on `/rest/<store>/async/bulk/V1/<route>` (e.g. PUT "products/bySku").

        A malformed item can fail the whole request: that raises `ItemRejected` for the batch.
        """
        route = route.strip("/").removeprefix("V1/")
        path = f"/rest/{_q(store)}/async/bulk/V1/{route}"
        body = self._call(method, path, items)
        try:
            submission = bulk.parse_submission(body, len(items))
        except ValueError as exc:
            raise ItemRejected(202, f"unreadable bulk answer: {exc}") from None
        pending = bulk.Pending(tuple(submission.accepted), tuple(submission.rejected))
        self._shared.pending[submission.bulk_uuid] = pending
        return submission

    def bulk_wait(
        self, bulk_uuid: str, *, poll_interval: float = 0.5, timeout: float = 600
    ) -> list[OperationResult]:
        """Wait until no operation is open, then answer one result per request item (by index).

        Operations still open at `timeout` come back with status "open" and the message "bulk
        operation still open after N s": a stopped consumer is the items' problem, not the run's.
        Items rejected on submission are included when the bulk was submitted by this client.
        """
        pending = self._shared.pending.get(bulk_uuid)
        try:
            results = bulk.wait(
                lambda path: self._call("GET", path),
                self._sleep,
                _url("all", f"bulk/{_q(bulk_uuid)}"),
                pending,
                is_lock_message,
                poll_interval=poll_interval,
                timeout=timeout,
            )
        except ValueError as exc:
            raise ItemRejected(200, f"unreadable bulk status: {exc}") from None
        self._shared.pending.pop(bulk_uuid, None)
        return results

    # -- plumbing (pimsync.magento.http) ---------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        recover: Callable[[], Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        return self._sender.call(
            method, path, body, params=params, recover=recover, timeout=timeout
        )

    def _search(self, resource: str, filters: dict[str, Any], store: str = "all") -> list[Any]:
        return self._sender.search(_url(store, resource), filters)

    def _get_or_none(self, path: str) -> Any:
        return self._sender.get_or_none(path)


@contextmanager
def _readable(what: str, path: str) -> Iterator[None]:
    """Around a read every push starts with: an answer that is not what Magento's API promises
    (an error served as 200, a list for an object, missing ids) stops the run in one line."""
    try:
        yield
    except ItemRejected as exc:
        reason = exc.message
    except ValidationError as exc:
        first = exc.errors()[0]
        reason = f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
    except (KeyError, TypeError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    else:
        return
    raise MagentoError(
        f"Magento answered GET {path} with something that is not its list of {what} "
        f"({reason[:200]}): check [magento] base_url and what answers there"
    )


def _url(store: str, resource: str) -> str:
    return f"/rest/{_q(store)}/V1/{resource}"


def _q(segment: str) -> str:
    """One path segment, fully encoded: a "/" in a SKU must not split the path."""
    return quote(segment, safe="")


def _sku(payload: dict[str, Any]) -> str:
    sku = payload.get("sku")
    if not isinstance(sku, str) or not sku.strip():
        raise ValueError("a product payload needs a non-empty sku")
    return sku
