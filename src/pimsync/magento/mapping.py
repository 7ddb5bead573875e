"""How staged PIM records become Magento payloads: pure functions over a `CatalogContext`.

Every payload is split by scope: the global part is written through `/rest/all/V1`, and each
store view gets only its own localized values (and only where they differ from the global ones,
so Magento's "Use default value" stays on for everything else; magento2 #9186, #31083). The hash
of these payloads is what the push stage compares, so a mapping change that changes an item's
payload marks that item, and nothing else.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

from pimsync.config import MappingConfig

# PIM attribute codes that map to Magento's own attributes instead of a prefixed copy.
SYSTEM_ATTRIBUTES = {"name": "name", "description": "description", "weight": "weight"}
PRICE_TYPE = "pim_catalog_price_collection"
MEDIA_TYPES = frozenset({"pim_catalog_image", "pim_catalog_file"})
SELECT_TYPES = frozenset({"pim_catalog_simpleselect", "pim_catalog_multiselect"})
# Magento frontend input per PIM type; types missing here are not pushed as attributes.
FRONTEND_INPUT = {
    "pim_catalog_text": "text",
    "pim_catalog_textarea": "textarea",
    "pim_catalog_simpleselect": "select",
    "pim_catalog_multiselect": "multiselect",
    "pim_catalog_boolean": "boolean",
    "pim_catalog_date": "date",
    "pim_catalog_number": "text",
    "pim_catalog_metric": "text",
}
VISIBILITY_NOT_VISIBLE = 1
VISIBILITY_CATALOG_SEARCH = 4


class MissingDependencyError(Exception):
    """The payload needs something Magento does not have yet (an option, a category, a set)."""


@dataclass(frozen=True)
class Payloads:
    """What one item sends: a global payload and a payload per store view code.

    Built, then only read: its hash is compared before sending and stored after, so it is
    computed once (any `extra` a caller adds must be added before the first `hash()`).
    """

    global_: dict[str, Any]
    stores: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # links, axes, media: not sent as-is

    def as_dict(self) -> dict[str, Any]:
        return {"all": self.global_, "stores": self.stores, **self.extra}

    def hash(self) -> str:
        return self._digest

    @cached_property
    def _digest(self) -> str:
        data = orjson.dumps(self.as_dict(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(data).hexdigest()


@dataclass
class AttributeInfo:
    code: str
    type: str
    localizable: bool
    scopable: bool


@dataclass
class CatalogContext:
    """What payloads refer to, read from staging (and Magento's store list) once per push."""

    mapping: MappingConfig
    attributes: dict[str, AttributeInfo]
    option_ids: dict[str, str]  # "<attribute>/<option>" -> Magento option id
    category_ids: dict[str, str]  # PIM category code -> Magento category id
    attribute_set_ids: dict[str, int]  # PIM family code -> Magento attribute set id
    store_ids: dict[str, int]  # Magento store view code -> id
    website_ids: dict[str, int]  # Magento website code -> id
    family_axes: dict[str, list[str]] = field(default_factory=dict)  # "<family>/<variant>"

    def magento_code(self, pim_code: str) -> str:
        return SYSTEM_ATTRIBUTES.get(pim_code) or f"{self.mapping.attribute_prefix}{pim_code}"

    @property
    def store_locales(self) -> dict[str, str]:
        """Store view code -> PIM locale, for the store views other than the admin locale's."""
        admin = self.mapping.admin_locale
        return {store: locale for locale, store in self.mapping.locales.items() if locale != admin}


# -- attributes, options, attribute sets ------------------------------------------------------


def pushable_attribute(info: AttributeInfo) -> bool:
    """PIM attributes that become Magento attributes (not the identifier, prices or media)."""
    return info.type in FRONTEND_INPUT and info.code not in SYSTEM_ATTRIBUTES


def attribute_payload(record: Mapping[str, Any], context: CatalogContext) -> Payloads:
    labels = record.get("labels") or {}
    mapping = context.mapping
    code = str(record["code"])
    pim_type = str(record["type"])
    admin_label = labels.get(mapping.admin_locale) or code
    frontend_labels = [
        {"store_id": context.store_ids[store], "label": labels[locale]}
        for store, locale in sorted(context.store_locales.items())
        if labels.get(locale) and store in context.store_ids
    ]
    localized = bool(record.get("localizable") or record.get("scopable"))
    payload = {
        "attribute_code": context.magento_code(code),
        "frontend_input": FRONTEND_INPUT[pim_type],
        "default_frontend_label": admin_label,
        "frontend_labels": [{"store_id": 0, "label": admin_label}, *frontend_labels],
        "is_required": False,
        "is_user_defined": True,
        # Configurable axes must be global selects; localized values need store scope.
        "scope": "store" if localized else "global",
        "is_filterable": pim_type in SELECT_TYPES,
        "is_visible_on_front": "1",
        "entity_type_id": "4",
    }
    return Payloads(payload)


def option_payload(record: Mapping[str, Any], context: CatalogContext) -> Payloads:
    """An option: its PIM code is the admin label (unique per attribute, stable for matching);
    the store views show the PIM labels."""
    labels = record.get("labels") or {}
    admin = labels.get(context.mapping.admin_locale)
    store_labels = [{"store_id": 0, "label": str(record["code"])}]
    for locale, store in sorted(context.mapping.locales.items()):
        label = labels.get(locale)
        if label and store in context.store_ids:
            store_labels.append({"store_id": context.store_ids[store], "label": label})
    payload = {
        "label": str(record["code"]),
        "sort_order": int(record.get("sort_order") or 0),
        "is_default": False,
        "store_labels": store_labels,
    }
    return Payloads(payload, extra={"admin_label": admin})


def attribute_set_name(family: str, context: CatalogContext) -> str:
    return context.mapping.attribute_sets.get(family, family)


def family_payload(record: Mapping[str, Any], context: CatalogContext) -> Payloads:
    """An attribute set: its name and the Magento attributes assigned to it."""
    family = str(record["code"])
    attributes = sorted(
        context.magento_code(code)
        for code in record.get("attributes") or []
        if code in context.attributes and pushable_attribute(context.attributes[code])
    )
    return Payloads(
        {"attribute_set_name": attribute_set_name(family, context)},
        extra={"attributes": attributes},
    )


# -- categories --------------------------------------------------------------------------------


def slug(text: str) -> str:
    """Magento's url_key rule: lower-case ASCII, runs of other characters become one '-'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def category_payload(record: Mapping[str, Any], context: CatalogContext) -> Payloads:
    labels = record.get("labels") or {}
    code = str(record["code"])
    name = labels.get(context.mapping.admin_locale) or code
    parent = record.get("parent")
    if parent is None:
        parent_id = str(context.mapping.category_root_id)
    elif parent in context.category_ids:
        parent_id = context.category_ids[parent]
    else:
        raise MissingDependencyError(f"parent category {parent!r} is not in Magento yet")
    payload = {
        "parent_id": int(parent_id),
        "name": name,
        "is_active": True,
        "include_in_menu": True,
        "custom_attributes": [{"attribute_code": "url_key", "value": slug(code)}],
    }
    stores = {}
    for store, locale in sorted(context.store_locales.items()):
        label = labels.get(locale)
        if label and label != name:
            url_key = f"{slug(label)}-{slug(code)}" if slug(label) != slug(code) else slug(code)
            stores[store] = {
                "name": label,
                "custom_attributes": [{"attribute_code": "url_key", "value": url_key}],
            }
    return Payloads(payload, stores)


# -- products ----------------------------------------------------------------------------------


def product_payload(
    record: Mapping[str, Any],
    context: CatalogContext,
    *,
    sku: str,
    type_id: str,
    visibility: int,
    axes: list[str] | None = None,
) -> Payloads:
    """A simple product, a configurable parent (a root product model) or a variant child."""
    mapping = context.mapping
    values: Mapping[str, Any] = record.get("values") or {}
    family = record.get("family")
    if family and family not in context.attribute_set_ids:
        raise MissingDependencyError(f"attribute set for family {family!r} is not in Magento yet")
    global_attrs: dict[str, Any] = {}
    store_attrs: dict[str, dict[str, Any]] = {store: {} for store in context.store_locales}
    price: str | None = None
    weight: str | None = None
    media: list[str] = []
    for code, entries in sorted(values.items()):
        info = context.attributes.get(code)
        if info is None or not isinstance(entries, list):
            continue
        if info.type == PRICE_TYPE:
            price = _price(entries, context) if code == "price" else price
            continue
        if info.type in MEDIA_TYPES:
            media += [e["data"] for e in entries if isinstance(e, dict) and e.get("data")]
            continue
        if info.type not in FRONTEND_INPUT:
            continue
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("data") is None:
                continue
            if info.scopable and entry.get("scope") not in (None, mapping.channel):
                continue
            value = _value(info, entry["data"], context)
            if value is None:
                continue
            locale = entry.get("locale")
            target = context.magento_code(code)
            if code == "weight":
                weight = value
                continue
            if not info.localizable or locale == mapping.admin_locale:
                global_attrs[target] = value
            elif locale in mapping.locales:
                store = mapping.locales[locale]
                if store in store_attrs:
                    store_attrs[store][target] = value
    name = str(global_attrs.pop("name", None) or sku)
    url_key = f"{slug(name)}-{slug(sku)}"
    global_attrs["url_key"] = url_key
    payload: dict[str, Any] = {
        "sku": sku,
        "name": name,
        "type_id": type_id,
        "status": 1 if record.get("enabled", True) else 2,
        "visibility": visibility,
        "extension_attributes": {
            "website_ids": sorted(context.website_ids[w] for w in mapping.websites),
            "category_links": _category_links(record.get("categories") or [], context),
        },
        "custom_attributes": [
            {"attribute_code": code, "value": value} for code, value in sorted(global_attrs.items())
        ],
    }
    if family:
        payload["attribute_set_id"] = context.attribute_set_ids[family]
    if type_id != "configurable":
        payload["price"] = float(price) if price is not None else 0.0
    if weight is not None:
        payload["weight"] = weight
    stores: dict[str, dict[str, Any]] = {}
    for store, attrs in sorted(store_attrs.items()):
        differing = {
            k: v
            for k, v in attrs.items()
            if global_attrs.get(k, name if k == "name" else None) != v
        }
        if not differing:
            continue
        body: dict[str, Any] = {"sku": sku}
        if "name" in differing:
            body["name"] = differing.pop("name")
            body_url = f"{slug(body['name'])}-{slug(sku)}"
            differing["url_key"] = body_url
        body["custom_attributes"] = [
            {"attribute_code": code, "value": value} for code, value in sorted(differing.items())
        ]
        stores[store] = body
    extra: dict[str, Any] = {"media": media}
    if axes:
        extra["axes"] = axes
    return Payloads(payload, stores, extra)


def _price(entries: list[Any], context: CatalogContext) -> str | None:
    website = context.mapping.websites[0]
    currency = next((c for c, w in context.mapping.currencies.items() if w == website), None)
    for entry in entries:
        data = entry.get("data") if isinstance(entry, dict) else None
        for amount in data or []:
            if isinstance(amount, dict) and amount.get("currency") == currency:
                value = amount.get("amount")
                return None if value is None else str(value)
    return None


def _category_links(codes: list[Any], context: CatalogContext) -> list[dict[str, Any]]:
    links = []
    for position, code in enumerate(sorted(str(c) for c in codes)):
        category_id = context.category_ids.get(code)
        if category_id is None:
            raise MissingDependencyError(f"category {code!r} is not in Magento yet")
        links.append({"position": position, "category_id": category_id})
    return links


def _value(info: AttributeInfo, data: Any, context: CatalogContext) -> str | None:
    kind = info.type
    if kind == "pim_catalog_simpleselect":
        return _option_id(info.code, data, context)
    if kind == "pim_catalog_multiselect":
        if not isinstance(data, list):
            return None
        return ",".join(_option_id(info.code, item, context) for item in data)
    if kind == "pim_catalog_boolean":
        return "1" if data else "0"
    if kind == "pim_catalog_metric":
        return str(data.get("amount")) if isinstance(data, dict) else None
    if kind == "pim_catalog_date":
        return str(data)[:10]
    return str(data)


def _option_id(attribute: str, option: Any, context: CatalogContext) -> str:
    key = f"{attribute}/{option}"
    option_id = context.option_ids.get(key)
    if option_id is None:
        raise MissingDependencyError(f"option {key!r} is not in Magento yet")
    return option_id


def configurable_option(attribute_id: int, label: str, option_ids: list[str]) -> dict[str, Any]:
    return {
        "attribute_id": str(attribute_id),
        "label": label,
        "position": 0,
        "is_use_default": True,
        "values": [{"value_index": int(option_id)} for option_id in option_ids],
    }
