"""Products as the REST API renders them, and the value shapes Magento stores.

Custom attribute values come back as strings (decimals with six places, multiselects as
comma-separated ids); ``category_ids`` is a list of strings; top-level ``price``/``weight`` are
numbers. A client that hashes what it reads back must normalise the same way.
"""

from __future__ import annotations

from typing import Any

from .errors import wrong_type
from .state import CatalogState
from .store import Attribute, MediaEntry, Product, merged, value_at

TOP_LEVEL = ("name", "price", "status", "visibility", "weight")
_NOT_CUSTOM = frozenset((*TOP_LEVEL, "sku"))
IMAGE_ROLES = ("image", "small_image", "thumbnail", "swatch_image")
PRICED_TYPES = frozenset(("simple", "virtual", "downloadable"))

STOCK_DEFAULTS: dict[str, Any] = {
    "qty": 0,
    "is_in_stock": False,
    "is_qty_decimal": False,
    "show_default_notification_message": False,
    "use_config_min_qty": True,
    "min_qty": 0,
    "use_config_min_sale_qty": 1,
    "min_sale_qty": 1,
    "use_config_max_sale_qty": True,
    "max_sale_qty": 10000,
    "use_config_backorders": True,
    "backorders": 0,
    "use_config_notify_stock_qty": True,
    "notify_stock_qty": 1,
    "use_config_qty_increments": True,
    "qty_increments": 0,
    "use_config_enable_qty_inc": True,
    "enable_qty_increments": False,
    "use_config_manage_stock": True,
    "manage_stock": True,
    "low_stock_date": None,
    "is_decimal_divided": False,
    "stock_status_changed_auto": 0,
}


def number(value: Any) -> int | float:
    """A PHP float as json_encode prints it: integral values without a fraction."""
    num = float(value)
    return int(num) if num.is_integer() else num


def typed(value: Any, kind: str) -> Any:
    """Cast a typed data-interface field, failing like ``ServiceInputProcessor``."""
    if value is None:
        return None
    try:
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        return number(value)
    except (TypeError, ValueError):
        raise wrong_type(value, kind) from None


def store_value(attr: Attribute, value: Any) -> Any:
    """The string Magento hands back for a custom attribute value."""
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if attr.backend_type == "decimal":
        try:
            return f"{float(value):.6f}"
        except ValueError:
            return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def stock_view(product: Product) -> dict[str, Any]:
    return {"item_id": product.id, "product_id": product.id, "stock_id": 1, **product.stock}


def media_view(entry: MediaEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "media_type": entry.media_type,
        "label": entry.label,
        "position": entry.position,
        "disabled": entry.disabled,
        "types": list(entry.types),
        "file": entry.file,
    }


def super_attribute_views(state: CatalogState, product: Product) -> list[dict[str, Any]]:
    """``configurable_product_options`` with values taken from the linked children."""
    out = []
    for sa in product.super_attributes:
        code = state.attribute_ids.get(sa.attribute_id, "")
        seen: list[int] = []
        for child_id in product.children:
            child = state.products.get(child_id)
            raw = None if child is None else value_at(child.values, 0, code)
            if raw not in (None, "") and str(raw).isdigit() and int(raw) not in seen:
                seen.append(int(raw))
        out.append(
            {
                "id": sa.id,
                "attribute_id": str(sa.attribute_id),
                "label": sa.label,
                "position": sa.position,
                "values": [{"value_index": v} for v in seen],
                "product_id": product.id,
            }
        )
    return out


def product_view(state: CatalogState, product: Product, store_id: int) -> dict[str, Any]:
    """``GET /V1/products/{sku}`` at one store (0: global values only)."""
    vals = merged(product.values, store_id)
    ext: dict[str, Any] = {"website_ids": list(product.website_ids)}
    if product.category_links:
        ext["category_links"] = [dict(link) for link in product.category_links]
    ext["stock_item"] = stock_view(product)
    if product.type_id == "configurable":
        ext["configurable_product_options"] = super_attribute_views(state, product)
        ext["configurable_product_links"] = list(product.children)
    out: dict[str, Any] = {
        "id": product.id,
        "sku": product.sku,
        "name": vals.get("name"),
        "attribute_set_id": product.attribute_set_id,
        "price": vals.get("price") or 0,
        "status": vals.get("status", 1),
        "visibility": vals.get("visibility", 4),
        "type_id": product.type_id,
        "created_at": product.created_at,
        "updated_at": product.updated_at,
    }
    if vals.get("weight") is not None:
        out["weight"] = vals["weight"]
    out["extension_attributes"] = ext
    out["product_links"] = list(product.product_links)
    out["options"] = list(product.options)
    out["media_gallery_entries"] = [media_view(e) for e in product.media]
    out["tier_prices"] = list(product.tier_prices)
    roles = {role: e.file for e in product.media for role in e.types}
    custom = [
        {"attribute_code": code, "value": roles.get(code, value)}
        for code, value in vals.items()
        if code not in _NOT_CUSTOM
    ]
    custom.extend(
        {"attribute_code": role, "value": roles[role]}
        for role in IMAGE_ROLES
        if role in roles and role not in vals
    )
    if product.category_links:
        custom.append(
            {
                "attribute_code": "category_ids",
                "value": [str(link["category_id"]) for link in product.category_links],
            }
        )
    out["custom_attributes"] = custom
    return out


def product_field(state: CatalogState, product: Product, store_id: int, name: str) -> Any:
    """One field for ``searchCriteria`` filters and sort orders."""
    if name in ("entity_id", "id"):
        return product.id
    if name in ("sku", "type_id", "attribute_set_id", "created_at", "updated_at"):
        return getattr(product, name)
    if name in ("category_id", "category_ids"):
        return [str(link["category_id"]) for link in product.category_links]
    if name == "website_id":
        return list(product.website_ids)
    if name == "store_id":
        return state.config.store_ids_of_websites(product.website_ids)
    return value_at(product.values, store_id, name)


def product_url_paths(
    state: CatalogState, values: dict[int, dict[str, Any]], website_ids: list[int]
) -> set[tuple[int, str]]:
    """The URL rewrites a product needs: one per store of its websites unless not visible."""
    wanted: set[tuple[int, str]] = set()
    suffix = state.settings.url_suffix
    for store_id in state.config.store_ids_of_websites(website_ids):
        if str(value_at(values, store_id, "visibility")) == "1":
            continue  # Not Visible Individually: no rewrite, so no collision.
        key = value_at(values, store_id, "url_key")
        if key:
            wanted.add((store_id, f"{key}{suffix}"))
    return wanted
