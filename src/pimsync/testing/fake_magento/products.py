"""``ProductRepositoryInterface``: save (an upsert keyed by SKU), get, delete, getList, stock.

Validation follows ``ProductRepository::save`` and the EAV backends, and happens before anything
is mutated, so a rejected save leaves the product exactly as it was.
"""

from __future__ import annotations

from typing import Any

from .context import Call
from .errors import (
    PRODUCT_NOT_SAVED,
    URL_KEY_EXISTS,
    ApiError,
    invalid_field_value,
    product_not_found,
    required_field,
    unknown_property,
    value_empty,
)
from .media import replace_gallery
from .product_view import (
    PRICED_TYPES,
    STOCK_DEFAULTS,
    number,
    product_field,
    product_url_paths,
    product_view,
    stock_view,
    store_value,
    typed,
)
from .search import parse_criteria, search, sku_candidates
from .state import PRODUCT_ENTITY_TYPE, CatalogState, now, slugify
from .store import Attribute, AttributeSet, Product, SuperAttribute, copy_values, write_targets

PRODUCT_INTERFACE = "Magento\\Catalog\\Api\\Data\\ProductInterface"
PRODUCT_FIELDS = frozenset(
    (
        "id", "sku", "name", "attribute_set_id", "price", "status", "visibility", "type_id",
        "created_at", "updated_at", "weight", "extension_attributes", "product_links",
        "options", "media_gallery_entries", "tier_prices", "custom_attributes",
    )
)  # fmt: skip
_TOP_TYPES = {"price": "float", "status": "int", "visibility": "int", "weight": "float"}
_CREATE_DEFAULTS = {
    "status": 1,
    "visibility": 4,
    "options_container": "container2",
    "required_options": "0",
    "has_options": "0",
}
SKU_MAX_LENGTH = 64


def _attribute_set(state: CatalogState, raw: Any) -> AttributeSet:
    try:
        aset = state.attribute_sets.get(int(raw))
    except (TypeError, ValueError):
        aset = None
    if aset is None or aset.entity_type_id != PRODUCT_ENTITY_TYPE:
        raise ApiError(400, "Invalid product data: %1", ["Invalid attribute set entity type"])
    return aset


def _changes(state: CatalogState, data: dict[str, Any], aset: AttributeSet) -> dict[str, Any]:
    """EAV values a save writes, normalised; custom attributes outside the set are dropped."""
    changes: dict[str, Any] = {}
    for code, kind in _TOP_TYPES.items():
        if code in data:
            changes[code] = typed(data[code], kind)
    if "name" in data:
        changes["name"] = None if data["name"] is None else str(data["name"])
    for item in data.get("custom_attributes") or ():
        if not isinstance(item, dict):
            continue
        code = str(item.get("attribute_code") or "")
        attr = state.attributes.get(code)
        # Magento silently drops unknown codes and codes not in the product's attribute set.
        if attr is None or code not in aset.attributes or code in ("sku", "category_ids"):
            continue
        value = item.get("value")
        if code in _TOP_TYPES:
            changes[code] = typed(value, _TOP_TYPES[code])
        elif code == "name":
            changes[code] = None if value is None else str(value)
        elif code == "url_key" and value:
            changes[code] = slugify(str(value))
        else:
            changes[code] = store_value(attr, value)
    if state.settings.strict_options:
        _check_options(state, changes)
    return changes


def _check_options(state: CatalogState, changes: dict[str, Any]) -> None:
    for code, value in changes.items():
        attr = state.attributes[code]
        if not attr.has_table_options or value in (None, ""):
            continue
        for part in str(value).split(","):
            if not part.isdigit() or int(part) not in attr.options:
                raise invalid_field_value(code, value)


def _category_links(state: CatalogState, data: dict[str, Any]) -> list[dict[str, Any]] | None:
    ext = data.get("extension_attributes") or {}
    links: list[dict[str, Any]] | None = None
    if isinstance(ext, dict) and ext.get("category_links") is not None:
        links = [
            {"position": int(link.get("position") or 0), "category_id": str(link["category_id"])}
            for link in ext["category_links"]
            if isinstance(link, dict) and "category_id" in link
        ]
    for item in data.get("custom_attributes") or ():
        if isinstance(item, dict) and item.get("attribute_code") == "category_ids":
            ids = item.get("value") or []
            ids = ids if isinstance(ids, list) else str(ids).split(",")
            links = [{"position": 0, "category_id": str(cid).strip()} for cid in ids if cid]
    if links is not None:
        for link in links:
            cid = link["category_id"]
            if not cid.isdigit() or int(cid) not in state.categories:
                raise ApiError(400, PRODUCT_NOT_SAVED)  # the foreign key fails
    return links


def _website_ids(call: Call, ext: dict[str, Any], existing: Product | None) -> list[int]:
    if ext.get("website_ids") is not None:
        ids = [int(w) for w in ext["website_ids"]]
        if any(w not in call.state.config.websites for w in ids):
            raise ApiError(400, PRODUCT_NOT_SAVED)
        return ids
    if existing is not None:
        return existing.website_ids
    if call.scope.store_id == 0:
        return list(call.state.config.websites)
    return [call.scope.website_id]


def _check_required(
    state: CatalogState, aset: AttributeSet, values: dict[int, dict[str, Any]], type_id: str,
    changes: dict[str, Any], is_new: bool,
) -> None:  # fmt: skip
    if (is_new and not values[0].get("name")) or ("name" in changes and not changes["name"]):
        raise value_empty("Product Name")
    if is_new and type_id in PRICED_TYPES and values[0].get("price") is None:
        raise value_empty("Price")
    for code in aset.attributes:
        attr = state.attributes.get(code)
        if attr is None or not (attr.is_required and attr.is_user_defined):
            continue
        if (is_new and values[0].get(code) in (None, "")) or (
            code in changes and changes[code] in (None, "")
        ):
            raise value_empty(attr.label)


def _super_attributes(
    state: CatalogState, raw: list[Any], current: list[SuperAttribute]
) -> list[SuperAttribute]:
    by_attr = {sa.attribute_id: sa for sa in current}
    result = []
    for item in raw:
        attr = state.attribute(item.get("attribute_id", "")) if isinstance(item, dict) else None
        if attr is None:
            raise ApiError(400, PRODUCT_NOT_SAVED)
        old = by_attr.get(attr.id)
        result.append(
            SuperAttribute(
                old.id if old else next(state.super_attribute_ids),
                attr.id,
                str(item.get("label") or attr.label),
                int(item.get("position") or 0),
                bool(item.get("is_use_default", True)),
            )
        )
    return result


def check_links(state: CatalogState, supers: list[SuperAttribute], child_ids: list[int]) -> None:
    """The save plugin's checks on ``configurable_product_links``."""
    codes = [state.attribute_ids[sa.attribute_id] for sa in supers]
    seen: dict[str, int] = {}
    for child_id in child_ids:
        child = state.products.get(child_id)
        key = ""
        for code in codes:
            value = None if child is None else child.values[0].get(code)
            if not value:
                raise ApiError(
                    400,
                    'Product with id "%1" does not contain required attribute "%2".',
                    [child_id, code],
                )
            key += f"{code}:{value};"
        if key in seen:
            raise ApiError(
                400,
                'Products "%1" and "%2" have the same set of attribute values.',
                [child_id, seen[key]],
            )
        seen[key] = child_id


def save_product(call: Call) -> dict[str, Any]:
    """``POST /V1/products`` and ``PUT /V1/products/{sku}``: create or update by SKU."""
    state, scope = call.state, call.scope
    data = call.part("product")
    for key in data:
        if key not in PRODUCT_FIELDS:
            raise unknown_property(key, PRODUCT_INTERFACE)
    # The URL SKU of PUT is not a parameter of save(): the body SKU is what gets saved.
    sku = str(data.get("sku") or call.params.get("sku") or "").strip()
    if not sku:
        raise value_empty("SKU")
    if len(sku) > SKU_MAX_LENGTH:
        raise ApiError(400, "SKU length should be %1 characters maximum.", [SKU_MAX_LENGTH])
    state.writes_by_sku[sku] += 1
    rejection = state.rejections.get(sku.lower())
    if rejection is not None:
        raise rejection[0]
    existing = state.product_by_sku(sku)
    is_new = existing is None
    type_id = str(data.get("type_id") or (existing.type_id if existing else "simple"))
    aset = _attribute_set(
        state, data.get("attribute_set_id", existing.attribute_set_id if existing else None)
    )
    changes = _changes(state, data, aset)
    values = copy_values(existing.values) if existing else {0: {}}
    for code, value in changes.items():
        attr: Attribute = state.attributes[code]
        for target in write_targets(attr.scope, scope, is_new=is_new, config=state.config):
            values.setdefault(target, {})[code] = value
    if is_new:
        glob = values[0]
        for code, default in _CREATE_DEFAULTS.items():
            glob.setdefault(code, default)
        if not glob.get("url_key") and glob.get("name"):
            glob["url_key"] = slugify(str(glob["name"]))
    _check_required(state, aset, values, type_id, changes, is_new)

    ext = data.get("extension_attributes") or {}
    if not isinstance(ext, dict):
        ext = {}
    website_ids = _website_ids(call, ext, existing)
    links = _category_links(state, data)
    media = existing.media if existing else []
    new_files: list[str] = []
    entries = data.get("media_gallery_entries")
    if entries is not None:
        if not isinstance(entries, list):
            raise required_field("media_gallery_entries")
        media, new_files = replace_gallery(state, media, entries)
    supers = existing.super_attributes if existing else []
    children = existing.children if existing else []
    if type_id == "configurable":
        if ext.get("configurable_product_options") is not None:
            supers = _super_attributes(state, ext["configurable_product_options"], supers)
        if ext.get("configurable_product_links") is not None:
            children = [int(c) for c in ext["configurable_product_links"]]
            check_links(state, supers, children)

    pid = existing.id if existing else -1
    wanted = product_url_paths(state, values, website_ids)
    if state.url_conflict(("product", pid), wanted):
        raise ApiError(400, URL_KEY_EXISTS)

    # --- everything is valid: commit ---
    stamp = now()
    if existing is None:
        pid = next(state.product_ids)
        product = Product(
            pid, sku, type_id, aset.id, stamp, stamp, values, website_ids,
            stock=dict(STOCK_DEFAULTS),
        )  # fmt: skip
        state.products[pid] = product
        state.sku_index[sku.lower()] = pid
    else:
        product = existing
        product.sku, product.type_id, product.attribute_set_id = sku, type_id, aset.id
        product.values, product.website_ids, product.updated_at = values, website_ids, stamp
    if links is not None:
        product.category_links = links
    product.media = media
    state.media_files.update(new_files)
    product.super_attributes, product.children = supers, children
    if isinstance(ext.get("stock_item"), dict):
        update_stock(product, ext["stock_item"])
    for key in ("tier_prices", "product_links", "options"):
        if isinstance(data.get(key), list):
            setattr(product, key, list(data[key]))
    state.set_urls(("product", pid), wanted)
    return product_view(state, product, scope.store_id)


def update_stock(product: Product, raw: dict[str, Any]) -> None:
    for key, value in raw.items():
        if key in ("item_id", "product_id", "stock_id") or key not in STOCK_DEFAULTS:
            continue
        if key in ("qty", "min_qty", "min_sale_qty", "max_sale_qty", "notify_stock_qty"):
            value = number(value) if value is not None else None
        product.stock[key] = value


def _lookup(call: Call, name: str = "sku") -> Product:
    product = call.state.product_by_sku(call.params[name])
    if product is None:
        raise product_not_found()
    return product


def get_product(call: Call) -> dict[str, Any]:
    """``GET /V1/products/{sku}``; ``storeId`` overrides the URL's store for the read."""
    product = _lookup(call)
    store_id = call.scope.store_id
    raw = call.query.get("storeId")
    if raw is not None and raw.isdigit() and (int(raw) in call.state.config.stores or raw == "0"):
        store_id = int(raw)
    return product_view(call.state, product, store_id)


def delete_product(call: Call) -> bool:
    state = call.state
    product = _lookup(call)
    del state.products[product.id]
    del state.sku_index[product.sku.lower()]
    state.drop_urls(("product", product.id))
    for other in state.products.values():
        if product.id in other.children:
            other.children.remove(product.id)
    return True


def list_products(call: Call) -> dict[str, Any]:
    """``GET /V1/products?searchCriteria...`` at the request's store view."""
    state, store_id = call.state, call.scope.store_id
    criteria = parse_criteria(call.query)
    for name in criteria.fields() | {f for f, _ in criteria.sort}:
        if name not in _SPECIAL_FIELDS and name not in state.attributes:
            raise ApiError(400, "Invalid attribute name: %1", [name])
    skus = sku_candidates(criteria)
    if skus is None:
        items: list[Product] = list(state.products.values())
    else:
        found = {p.id: p for p in (state.product_by_sku(s) for s in skus) if p is not None}
        items = sorted(found.values(), key=lambda p: p.id)
    return search(
        items,
        criteria,
        lambda p, name: product_field(state, p, store_id, name),
        lambda p: product_view(state, p, store_id),
    )


_SPECIAL_FIELDS = frozenset(
    ("entity_id", "id", "type_id", "attribute_set_id", "created_at", "updated_at",
     "category_id", "website_id", "store_id")
)  # fmt: skip


def get_stock(call: Call) -> dict[str, Any]:
    """``GET /V1/stockItems/{productSku}``."""
    return stock_view(_lookup(call, "productSku"))


def put_stock(call: Call) -> int:
    """``PUT /V1/products/{productSku}/stockItems/{itemId}``: answers the item id."""
    product = _lookup(call, "productSku")
    update_stock(product, call.part("stockItem"))
    product.updated_at = now()
    return product.id
