"""Pushing one staged item to Magento: the payload it would send, and sending it.

`payload_for` is pure (used by `--dry-run` and by the mapping-change check); the `push_*`
functions make the requests. They run in worker threads, so they only read the context and
return an `Outcome`; the main thread writes outcomes to staging.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pimsync.magento.client import MagentoClient
from pimsync.magento.mapping import (
    VISIBILITY_CATALOG_SEARCH,
    VISIBILITY_NOT_VISIBLE,
    CatalogContext,
    MissingDependencyError,
    Payloads,
    attribute_payload,
    category_payload,
    configurable_option,
    family_payload,
    option_payload,
    product_payload,
    pushable_attribute,
)
from pimsync.pim.client import PimClient

# Rows read, and outcomes written, per batch.
BATCH = 200


@dataclass
class Outcome:
    """What happened to one item; `action` is created, updated, unchanged, ignored or error."""

    code: str
    action: str
    hash: str = ""
    payloads: Payloads | None = None
    magento_id: str | None = None
    message: str | None = None
    media: tuple[str, list[tuple[str, str | None]]] | None = None  # (sku, [(code, label)])

    @property
    def ok(self) -> bool:
        return self.action != "error"


@dataclass
class PushContext:
    """Everything a worker needs: the catalog context plus per-run caches."""

    catalog: CatalogContext
    force: bool = False
    attribute_ids: dict[str, str] = field(default_factory=dict)  # PIM attribute -> Magento id
    model_parents: dict[str, str | None] = field(default_factory=dict)  # model -> its parent
    set_ids_by_name: dict[str, int] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


def sku_of(entity: str, row: dict[str, Any]) -> str:
    if entity == "products":
        return str(row["identifier"] or row["code"])
    return str(row["code"])


def payload_for(entity: str, row: dict[str, Any], context: PushContext) -> Payloads | None:
    """The payloads an item would send, or None when the entity is not pushed as such."""
    record = orjson.loads(row["data"])
    catalog = context.catalog
    if entity == "attributes":
        info = catalog.attributes.get(row["code"])
        return attribute_payload(record, catalog) if info and pushable_attribute(info) else None
    if entity == "attribute_options":
        info = catalog.attributes.get(row["parent_code"] or "")
        if info is None or not pushable_attribute(info):
            return None
        return option_payload(record, catalog)
    if entity == "families":
        return family_payload(record, catalog)
    if entity == "categories":
        return category_payload(record, catalog)
    if entity == "product_models":
        if record.get("parent"):
            return None  # a sub model: its values reach Magento through the root configurable
        axes = catalog.family_axes.get(f"{record.get('family')}/{record.get('family_variant')}")
        return product_payload(
            record,
            catalog,
            sku=row["code"],
            type_id="configurable",
            visibility=VISIBILITY_CATALOG_SEARCH,
            axes=axes or [],
        )
    if entity == "products":
        variant = bool(record.get("parent"))
        payloads = product_payload(
            record,
            catalog,
            sku=sku_of(entity, row),
            type_id="simple",
            visibility=VISIBILITY_NOT_VISIBLE if variant else VISIBILITY_CATALOG_SEARCH,
        )
        if variant:
            payloads.extra["parent"] = root_model(str(record["parent"]), context)
        return payloads
    raise ValueError(f"no payload for entity {entity}")


def root_model(code: str, context: PushContext) -> str:
    """The configurable a variant hangs under: the root of its product model chain."""
    seen = set()
    while context.model_parents.get(code) and code not in seen:
        seen.add(code)
        code = str(context.model_parents[code])
    return code


def push_item(
    entity: str, client: MagentoClient, row: dict[str, Any], context: PushContext
) -> Outcome:
    """Compute the item's payload; send it unless Magento already has exactly that."""
    code = row["code"]
    try:
        payloads = payload_for(entity, row, context)
    except MissingDependencyError as exc:
        return Outcome(code, "error", row["hash"], message=f"waiting: {exc}")
    if payloads is None:
        return Outcome(code, "ignored", row["hash"], message="not pushed to Magento as such")
    if payloads.hash() == row["payload_hash"] and not context.force:
        return Outcome(code, "unchanged", row["hash"], payloads, row["magento_id"])
    return SENDERS[entity](client, row, payloads, context)


def previous_payload(row: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(row["pushed_payload"]) if row.get("pushed_payload") else {}


def _send_attribute(
    client: MagentoClient, row: dict[str, Any], payloads: Payloads, context: PushContext
) -> Outcome:
    code = payloads.global_["attribute_code"]
    exists = row["magento_id"] is not None or client.get_attribute(code) is not None
    saved = client.save_attribute(payloads.global_, exists=exists)
    magento_id = saved.get("attribute_id")
    return Outcome(
        row["code"],
        "updated" if exists else "created",
        row["hash"],
        payloads,
        str(magento_id) if magento_id is not None else row["magento_id"],
    )


def _send_option(
    client: MagentoClient, row: dict[str, Any], payloads: Payloads, context: PushContext
) -> Outcome:
    attribute = context.catalog.magento_code(str(row["parent_code"]))
    if row["magento_id"]:
        client.update_option(attribute, int(row["magento_id"]), payloads.global_)
        return Outcome(row["code"], "updated", row["hash"], payloads, row["magento_id"])
    option_id = client.add_option(attribute, payloads.global_)
    return Outcome(row["code"], "created", row["hash"], payloads, str(option_id))


def _send_family(
    client: MagentoClient, row: dict[str, Any], payloads: Payloads, context: PushContext
) -> Outcome:
    name = payloads.global_["attribute_set_name"]
    set_id = int(row["magento_id"]) if row["magento_id"] else context.set_ids_by_name.get(name)
    action = "updated"
    if set_id is None:
        if not context.catalog.mapping.create_attribute_sets:
            raise MissingDependencyError(
                f"Magento has no attribute set {name!r}: map family {row['code']!r} in "
                "[mapping] attribute_sets or set create_attribute_sets = true"
            )
        set_id = client.create_attribute_set(name)
        action = "created"
    groups = client.attribute_groups(set_id)
    group_id = groups.get("General") or next(iter(groups.values()))
    before = set(previous_payload(row).get("attributes") or []) if action == "updated" else set()
    for attribute in payloads.extra["attributes"]:
        if attribute not in before:
            client.assign_attribute(set_id, group_id, attribute)
    return Outcome(row["code"], action, row["hash"], payloads, str(set_id))


def _send_category(
    client: MagentoClient, row: dict[str, Any], payloads: Payloads, context: PushContext
) -> Outcome:
    previous = previous_payload(row)
    if row["magento_id"] is None:
        saved = client.create_category(payloads.global_)
        category_id = int(saved["id"])
        action = "created"
    else:
        category_id = int(row["magento_id"])
        action = "updated"
        old_parent = (previous.get("all") or {}).get("parent_id")
        if old_parent is not None and old_parent != payloads.global_["parent_id"]:
            client.move_category(category_id, payloads.global_["parent_id"])
        client.update_category(category_id, payloads.global_, "all")
    for store, body in payloads.stores.items():
        if (previous.get("stores") or {}).get(store) != body:
            client.update_category(category_id, body, store)
    return Outcome(row["code"], action, row["hash"], payloads, str(category_id))


def _send_product(
    client: MagentoClient, row: dict[str, Any], payloads: Payloads, context: PushContext
) -> Outcome:
    sku = payloads.global_["sku"]
    saved = client.save_product(payloads.global_, "all")
    send_store_values(client, row, payloads)
    parent = payloads.extra.get("parent")
    if parent:
        link_variant(client, parent, sku, context)
    media: list[tuple[str, str | None]] = [(c, None) for c in payloads.extra.get("media") or []]
    action = "created" if row["magento_id"] is None else "updated"
    magento_id = str(saved["id"]) if isinstance(saved, dict) and "id" in saved else None
    return Outcome(row["code"], action, row["hash"], payloads, magento_id, media=(sku, media))


def send_store_values(client: MagentoClient, row: dict[str, Any], payloads: Payloads) -> None:
    """Each store view gets only the fields that changed since the last push, so the others
    keep Magento's "Use default value"."""
    before = previous_payload(row).get("stores") or {}
    for store, body in payloads.stores.items():
        changed = store_changes(before.get(store) or {}, body)
        if changed is not None:
            client.save_product(changed, store)


def store_changes(before: dict[str, Any], body: dict[str, Any]) -> dict[str, Any] | None:
    """The part of a store-view body that differs from what was sent before, or None."""
    old = {a["attribute_code"]: a["value"] for a in before.get("custom_attributes") or []}
    attributes = [
        a for a in body.get("custom_attributes") or [] if old.get(a["attribute_code"]) != a["value"]
    ]
    changed: dict[str, Any] = {"sku": body["sku"]}
    if "name" in body and body["name"] != before.get("name"):
        changed["name"] = body["name"]
    if attributes:
        changed["custom_attributes"] = attributes
    return changed if len(changed) > 1 else None


def link_variant(client: MagentoClient, parent: str, child: str, context: PushContext) -> None:
    """Make sure the configurable has its axes as options, then attach the child."""
    catalog = context.catalog
    axes = context_axes(parent, context)
    # Magento re-saves the whole option and link list: one variant of a parent at a time.
    with context.lock_for(parent):
        existing = {str(o.get("attribute_id")) for o in client.configurable_options(parent)}
        product = client.get_product(child) or {}
        values = {a["attribute_code"]: a["value"] for a in product.get("custom_attributes") or []}
        for axis in axes:
            attribute_id = context.attribute_ids.get(axis)
            if attribute_id is None:
                raise MissingDependencyError(f"axis attribute {axis!r} is not in Magento yet")
            if attribute_id in existing:
                continue
            value = values.get(catalog.magento_code(axis))
            if value is None:
                raise MissingDependencyError(f"variant {child!r} has no value for axis {axis!r}")
            label = catalog.magento_code(axis)
            client.add_configurable_option(
                parent, configurable_option(int(attribute_id), label, [str(value)])
            )
            existing.add(attribute_id)
        client.add_child(parent, child)


def context_axes(parent: str, context: PushContext) -> list[str]:
    axes = context.catalog.family_axes.get(f"@{parent}")
    if axes is None:
        raise MissingDependencyError(f"configurable {parent!r} is not staged or not in Magento")
    return axes


SENDERS: dict[str, Callable[[MagentoClient, dict[str, Any], Payloads, PushContext], Outcome]] = {
    "attributes": _send_attribute,
    "attribute_options": _send_option,
    "families": _send_family,
    "categories": _send_category,
    "product_models": _send_product,
    "products": _send_product,
}


# -- media ---------------------------------------------------------------------------------

FORBIDDEN_NAME = re.compile(r'[\\/?*:";<>()|{}\s]+')


def media_entry(
    meta: dict[str, Any], content: bytes, position: int, label: str | None
) -> dict[str, Any]:
    """A gallery entry; the first image of a product takes the image roles."""
    name = FORBIDDEN_NAME.sub(
        "_", str(meta.get("original_filename") or meta["code"]).rsplit("/", 1)[-1]
    )
    return {
        "media_type": "image",
        "label": label or name,
        "position": position,
        "disabled": False,
        "types": ["image", "small_image", "thumbnail"] if position == 0 else [],
        "content": {
            "base64_encoded_data": base64.b64encode(content).decode(),
            "type": str(meta.get("mime_type") or "image/jpeg"),
            "name": name,
        },
    }


def download_url(meta: dict[str, Any]) -> str:
    link = (meta.get("_links") or {}).get("download") or {}
    return str(link.get("href") or f"/api/rest/v1/media-files/{meta['code']}/download")


def fetch_media(pim: PimClient, meta: dict[str, Any]) -> bytes:
    return pim.download(download_url(meta))
