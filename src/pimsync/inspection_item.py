"""`pimsync show`: one staged item, what it would send to Magento now, and what Magento holds.

The would-push payload is computed exactly as a push computes it (`payload_for` over a context
built like `run_push` builds it), so it needs Magento's store views and websites; when Magento is
not configured or not reachable, the rest is still shown and the reason is given. `--live` also
reads the item back from Magento (GET requests only) and compares it with the would-push payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from pimsync.app import App
from pimsync.errors import ConfigError, MagentoError, UsageError
from pimsync.inspection import ITEM_TABLES, feed_of, iso, log_event, open_queries
from pimsync.magento.client import MagentoClient
from pimsync.magento.http import ItemRejected
from pimsync.magento.mapping import MissingDependencyError, Payloads
from pimsync.payload_diff import Drift, FieldChange, diff_payloads, drift
from pimsync.pipeline.push_context import build_catalog_context, load_context
from pimsync.pipeline.push_items import PushContext, payload_for
from pimsync.staging.tables import ENTITIES, Status

HISTORY = 20
# An inspection should answer quickly: a couple of attempts, short waits (a push retries more).
INSPECT_ATTEMPTS = 2
INSPECT_RETRY_WAIT = 5.0
LIVE_ENTITIES = ("attributes", "categories", "product_models", "products")


@dataclass
class LiveView:
    """What Magento holds for the item, compared with the would-push payload."""

    compared: list[str] = field(default_factory=list)  # the parts read back from Magento
    missing: list[str] = field(default_factory=list)  # parts Magento does not have at all
    drift: list[Drift] = field(default_factory=list)
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "missing": self.missing,
            "drift": [item.as_dict() for item in self.drift],
            "note": self.note,
        }


@dataclass
class ItemDetail:
    feed: str
    entity: str
    row: dict[str, Any]
    record: Any
    would_push: dict[str, Any] | None
    would_push_note: str | None
    last_pushed: dict[str, Any] | None
    diff: list[FieldChange]
    history: list[dict[str, Any]]
    live: LiveView | None = None

    def as_dict(self) -> dict[str, Any]:
        row = self.row
        return {
            "feed": self.feed,
            "entity": self.entity,
            "code": row["code"],
            "identifier": row["identifier"],
            "label": row["label"],
            "parent_code": row["parent_code"],
            "status": row["status"],
            "skipped": bool(row["skipped"]),
            "magento_id": row["magento_id"],
            "pim_updated": row["pim_updated"],
            "imported_at": iso(row["imported_at"]),
            "pushed_at": iso(row["pushed_at"]),
            "last_error": row["last_error"],
            "record": self.record,
            "would_push": self.would_push,
            "would_push_note": self.would_push_note,
            "last_pushed": self.last_pushed,
            "diff": [change.as_dict() for change in self.diff],
            "history": self.history,
            "live": self.live.as_dict() if self.live else None,
        }


def show_item(
    app: App,
    key: str,
    *,
    feed: str | None = None,
    entity: str | None = None,
    live: bool = False,
) -> ItemDetail:
    """Find the item by code or SKU and gather everything `show` prints."""
    entity, row, history = _locate(app, key, feed, entity)
    payloads, note, live_view = _would_push(app, entity, row, live)
    last_pushed = _json(row["pushed_payload"]) if row["pushed_payload"] else None
    would_push = payloads.as_dict() if payloads else None
    return ItemDetail(
        feed=feed_of(entity, row["parent_code"]),
        entity=entity,
        row=row,
        record=_json(row["data"]),
        would_push=would_push,
        would_push_note=note,
        last_pushed=last_pushed,
        diff=diff_payloads(last_pushed, would_push) if would_push is not None else [],
        history=history,
        live=live_view,
    )


def _json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text  # a quarantined record is kept as the PIM sent it


def _locate(
    app: App, key: str, feed: str | None, entity: str | None
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    tables = ITEM_TABLES[feed] if feed else [(name, None) for name in ENTITIES]
    if entity is not None:
        tables = [(name, parent) for name, parent in tables if name == entity]
    with open_queries(app) as queries:
        found = []
        for name, has_parent in tables:
            row = queries.find_item(name, key)
            if row is not None and (has_parent is None or bool(row["parent_code"]) == has_parent):
                found.append((name, row))
        if not found:
            where = " ".join(
                part for part in (feed and f"feed {feed}", entity and f"entity {entity}") if part
            )
            raise UsageError(
                f"no staged item with code or SKU {key!r}" + (f" in {where}" if where else ""),
                hint="`pimsync items --search TEXT` finds items by part of their code, SKU or name",
            )
        if len(found) > 1:
            places = ", ".join(f"{feed_of(name, row['parent_code'])}/{name}" for name, row in found)
            option = (
                "--entity"
                if len({feed_of(n, r["parent_code"]) for n, r in found}) == 1
                else "--feed"
            )
            raise UsageError(
                f"{key!r} is staged in several places ({places}): choose one with {option}"
            )
        name, row = found[0]
        codes = [row["code"]] + ([row["identifier"]] if row["identifier"] else [])
        history = [log_event(event) for event in queries.item_history(codes, HISTORY)]
    return name, row, history


def _would_push(
    app: App, entity: str, row: dict[str, Any], live: bool
) -> tuple[Payloads | None, str | None, LiveView | None]:
    config = app.config
    if live:
        config.require("magento.base_url", "magento.token")
    elif config.magento.base_url is None or config.magento.token is None:
        return (
            None,
            "Magento is not configured ([magento] base_url, token): the would-push payload "
            "needs its store views",
            None,
        )
    try:
        with _client(app) as client, app.repository() as repo:
            catalog = build_catalog_context(client, config)
            context = PushContext(catalog)
            load_context(repo, context)
            payloads, note = _payload(entity, row, context)
            view = _live(client, entity, row, payloads, note) if live else None
    except (MagentoError, ItemRejected) as exc:
        if live:
            raise MagentoError(f"show --live: {exc.message}") from None
        return None, f"Magento is not reachable: {exc.message}", None
    except ConfigError as exc:
        if live:
            raise
        return None, "; ".join([exc.message, *exc.problems]), None
    return payloads, note, view


def _client(app: App) -> MagentoClient:
    settings = app.config.magento
    settings = settings.model_copy(
        update={
            "max_attempts": min(settings.max_attempts, INSPECT_ATTEMPTS),
            "max_retry_wait": min(settings.max_retry_wait, INSPECT_RETRY_WAIT),
        }
    )
    return MagentoClient.from_config(settings, app.magento_transport, sleep=app.sleep)


def _payload(
    entity: str, row: dict[str, Any], context: PushContext
) -> tuple[Payloads | None, str | None]:
    if row["status"] == Status.QUARANTINED:
        return None, "quarantined: the PIM record failed validation, so it is never pushed"
    if entity not in LIVE_ENTITIES and entity not in ("attribute_options", "families"):
        return None, f"{entity} are not pushed to Magento as such"
    try:
        payloads = payload_for(entity, row, context)
    except MissingDependencyError as exc:
        return None, f"waits: {exc}"
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"cannot be built: {type(exc).__name__}: {exc}"
    if payloads is None:
        return None, "not pushed to Magento as such"
    note = "skipped: never pushed while the flag is set" if row["skipped"] else None
    return payloads, note


def _live(
    client: MagentoClient,
    entity: str,
    row: dict[str, Any],
    payloads: Payloads | None,
    note: str | None,
) -> LiveView:
    """Read the item from Magento, part by part, and compare the fields pimsync sends."""
    if payloads is None:
        return LiveView(note=f"nothing to compare: {note}")
    if entity not in LIVE_ENTITIES:
        return LiveView(note=f"--live does not read {entity} from Magento")
    parts: dict[str, tuple[str, dict[str, Any]]] = {"all": ("all", payloads.global_)}
    if entity != "attributes":  # an attribute's store labels travel in its global payload
        for store, body in sorted(payloads.stores.items()):
            parts[f"store:{store}"] = (store, body)
    if entity == "categories" and row["magento_id"] is None:
        return LiveView(missing=list(parts), note="not created in Magento yet")
    view = LiveView()
    for part, (store, expected) in parts.items():
        held = _fetch(client, entity, row, payloads, store)
        if held is None:
            view.missing.append(part)
            continue
        view.compared.append(part)
        view.drift += drift(part, expected, held)
    return view


def _fetch(
    client: MagentoClient, entity: str, row: dict[str, Any], payloads: Payloads, store: str
) -> dict[str, Any] | None:
    if entity == "attributes":
        return client.get_attribute(str(payloads.global_["attribute_code"]))
    if entity == "categories":
        return client.get_category(int(row["magento_id"]), store)
    return client.get_product(str(payloads.global_["sku"]), store)
