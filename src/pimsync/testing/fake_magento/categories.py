"""Categories: ``CategoryRepositoryInterface``, ``CategoryManagementInterface`` (tree, move) and
category product links.

Category saves wrap their failures as ``Could not save category: %1`` with the inner message as
the only parameter. Category URL paths (``parent-key/child-key.html``) share the per-store URL
space with products, so a category can collide with a product as well as with a sibling.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .context import Call
from .errors import (
    URL_KEY_EXISTS,
    VALUE_EMPTY,
    ApiError,
    no_such_entity,
    product_not_found,
    render,
    unknown_property,
)
from .search import parse_criteria, search
from .state import ROOT_CATALOG_ID, CatalogState, now, slugify
from .store import Category, StoreConfig, copy_values, merged, value_at, write_targets

CATEGORY_INTERFACE = "Magento\\Catalog\\Api\\Data\\CategoryInterface"
CATEGORY_FIELDS = frozenset(
    ("id", "parent_id", "name", "is_active", "position", "level", "children", "created_at",
     "updated_at", "path", "available_sort_by", "include_in_menu", "extension_attributes",
     "custom_attributes")
)  # fmt: skip
SCOPES = {
    "name": "store", "is_active": "store", "include_in_menu": "store", "url_key": "store",
    "description": "store", "meta_title": "store", "meta_keywords": "store",
    "meta_description": "store", "display_mode": "store", "is_anchor": "global",
    "available_sort_by": "store", "default_sort_by": "store", "landing_page": "store",
    "page_layout": "store", "custom_use_parent_settings": "store", "image": "store",
}  # fmt: skip
_TOP = ("name", "is_active", "include_in_menu", "available_sort_by")
_DEFAULTS = {
    "is_active": True,
    "include_in_menu": True,
    "display_mode": "PRODUCTS",
    "is_anchor": "1",
}


def could_not_save(message: str, parameters: Any = None) -> ApiError:
    return ApiError(400, "Could not save category: %1", [render(message, parameters)])


def _get(state: CatalogState, category_id: int) -> Category:
    category = state.categories.get(category_id)
    if category is None:
        raise no_such_entity("id", category_id)
    return category


def _root_stores(config: StoreConfig, category: Category) -> list[int]:
    """Store views whose root category holds this category (all share root 2 here)."""
    parts = category.path.split("/")
    if len(parts) < 3 or int(parts[1]) != config.ROOT_CATEGORY_ID:
        return []
    return list(config.stores)


def _url_path(state: CatalogState, category: Category, store_id: int) -> str | None:
    keys: list[str] = []
    for cid in category.path.split("/")[2:]:
        node = state.categories.get(int(cid))
        key = None if node is None else value_at(node.values, store_id, "url_key")
        if not key:
            return None
        keys.append(str(key))
    return "/".join(keys) or None


def _subtree(state: CatalogState, category: Category) -> list[Category]:
    out, stack = [], [category]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(state.categories[c] for c in node.children if c in state.categories)
    return out


def _reindex_urls(state: CatalogState, top: Category) -> bool:
    """Regenerate the subtree's URL rewrites; False (nothing changed) on a collision."""
    suffix = state.settings.url_suffix
    owners = {("category", c.id) for c in _subtree(state, top)}
    plan: dict[tuple[str, int], set[tuple[int, str]]] = {}
    for node in _subtree(state, top):
        wanted = set()
        for store_id in _root_stores(state.config, node):
            path = _url_path(state, node, store_id)
            if path:
                wanted.add((store_id, path + suffix))
        plan[("category", node.id)] = wanted
    for wanted in plan.values():
        for key in wanted:
            if state.url_owner.get(key, ("category", top.id)) not in owners:
                return False
    for owner, wanted in plan.items():
        state.set_urls(owner, wanted)
    return True


def _changes(data: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for key in ("is_active", "include_in_menu"):
        if key in data:
            changes[key] = bool(data[key])
    if "name" in data:
        changes["name"] = None if data["name"] is None else str(data["name"])
    if isinstance(data.get("available_sort_by"), list):
        changes["available_sort_by"] = list(data["available_sort_by"])
    for item in data.get("custom_attributes") or ():
        code = item.get("attribute_code") if isinstance(item, dict) else None
        if code in SCOPES and code not in changes:
            value = item.get("value")
            changes[code] = slugify(str(value)) if code == "url_key" and value else value
    return changes


def save_category(call: Call) -> dict[str, Any]:
    """``POST /V1/categories`` and ``PUT /V1/categories/{id}``."""
    state, scope = call.state, call.scope
    data = call.part("category")
    for key in data:
        if key not in CATEGORY_FIELDS:
            raise unknown_property(key, CATEGORY_INTERFACE)
    raw_id = call.params.get("id", data.get("id"))
    existing = None if raw_id is None else _get(state, int(raw_id))
    is_new = existing is None
    changes = _changes(data)
    if "name" in changes and not changes["name"]:
        raise could_not_save(VALUE_EMPTY, ["Name"])
    values = copy_values(existing.values) if existing else {0: {}}
    for code, value in changes.items():
        for target in write_targets(SCOPES[code], scope, is_new=is_new, config=state.config):
            values.setdefault(target, {})[code] = value
    stamp = now()
    if existing is None:
        parent = _get(state, int(data.get("parent_id") or state.config.ROOT_CATEGORY_ID))
        glob = values[0]
        if not glob.get("name"):
            raise could_not_save(VALUE_EMPTY, ["Name"])
        for code, default in _DEFAULTS.items():
            glob.setdefault(code, default)
        if not glob.get("url_key"):
            glob["url_key"] = slugify(str(glob["name"]))
        cid = next(state.category_ids)
        siblings = [state.categories[c].position for c in parent.children]
        position = int(data.get("position") or (max(siblings, default=0) + 1))
        category = Category(
            cid, parent.id, f"{parent.path}/{cid}", parent.level + 1, position, stamp, stamp, values
        )
        state.categories[cid] = category
        parent.children.append(cid)
        if not _reindex_urls(state, category):
            del state.categories[cid]
            parent.children.remove(cid)
            raise could_not_save(URL_KEY_EXISTS)
    else:
        category = existing
        old_values, category.values = category.values, values
        if not _reindex_urls(state, category):
            category.values = old_values
            raise could_not_save(URL_KEY_EXISTS)
        category.updated_at = stamp
    return category_view(state, category, scope.store_id)


def category_view(state: CatalogState, category: Category, store_id: int) -> dict[str, Any]:
    vals = merged(category.values, store_id)
    custom = [{"attribute_code": k, "value": v} for k, v in vals.items() if k not in _TOP]
    url_path = _url_path(state, category, store_id)
    if url_path:
        custom.append({"attribute_code": "url_path", "value": url_path})
    custom.append({"attribute_code": "children_count", "value": str(len(category.children))})
    return {
        "id": category.id,
        "parent_id": category.parent_id,
        "name": vals.get("name"),
        "is_active": bool(vals.get("is_active", True)),
        "position": category.position,
        "level": category.level,
        "children": ",".join(str(c) for c in category.children),
        "created_at": category.created_at,
        "updated_at": category.updated_at,
        "path": category.path,
        "available_sort_by": list(vals.get("available_sort_by") or []),
        "include_in_menu": bool(vals.get("include_in_menu", True)),
        "custom_attributes": custom,
    }


def get_category(call: Call) -> dict[str, Any]:
    return category_view(
        call.state, _get(call.state, call.int_param("categoryId")), call.scope.store_id
    )


def tree(call: Call) -> dict[str, Any]:
    """``GET /V1/categories?rootCategoryId=&depth=``: the tree from the store's root."""
    state, store_id = call.state, call.scope.store_id
    raw_root, raw_depth = call.query.get("rootCategoryId"), call.query.get("depth")
    default_root = ROOT_CATALOG_ID if store_id == 0 else state.config.ROOT_CATEGORY_ID
    root = _get(state, int(raw_root) if raw_root else default_root)
    depth = int(raw_depth) if raw_depth else None
    counts: Counter[int] = Counter(
        int(link["category_id"]) for p in state.products.values() for link in p.category_links
    )

    def node(category: Category, level: int) -> dict[str, Any]:
        vals = merged(category.values, store_id)
        kids = [state.categories[c] for c in category.children if c in state.categories]
        kids.sort(key=lambda c: c.position)
        return {
            "id": category.id,
            "parent_id": category.parent_id,
            "name": vals.get("name"),
            "is_active": bool(vals.get("is_active", True)),
            "position": category.position,
            "level": category.level,
            "product_count": counts[category.id],
            "children_data": (
                [] if depth is not None and level >= depth else [node(k, level + 1) for k in kids]
            ),
        }

    return node(root, 0)


def list_categories(call: Call) -> dict[str, Any]:
    state, store_id = call.state, call.scope.store_id

    def field(category: Category, name: str) -> Any:
        if name in ("id", "entity_id"):
            return category.id
        if name in ("parent_id", "path", "level", "position", "created_at", "updated_at"):
            return getattr(category, name)
        return value_at(category.values, store_id, name)

    items = sorted(state.categories.values(), key=lambda c: c.id)
    return search(
        items, parse_criteria(call.query), field, lambda c: category_view(state, c, store_id)
    )


def move_category(call: Call) -> bool:
    """``PUT /V1/categories/{categoryId}/move`` ``{"parentId": 5, "afterId": 7}``."""
    state = call.state
    category = _get(state, call.int_param("categoryId"))
    parent = _get(state, call.body_int("parentId"))
    after = call.body.get("afterId") if isinstance(call.body, dict) else None
    if f"{parent.path}/".startswith(f"{category.path}/"):
        raise ApiError(
            400, "Operation do not allow to move a parent category to any of children category"
        )
    siblings = [c for c in parent.children if c != category.id]
    # CategoryManagement::move: no afterId (or one past the last child) means "append".
    after_id = None if after is None else int(after)
    if siblings and (after_id is None or after_id > siblings[-1]):
        after_id = siblings[-1]
    index = siblings.index(after_id) + 1 if after_id in siblings else 0
    siblings.insert(index, category.id)
    old_parent = state.categories[category.parent_id]
    saved = (list(old_parent.children), list(parent.children))
    old_parent.children.remove(category.id)
    parent.children = siblings
    _relocate(state, category, parent)
    if not _reindex_urls(state, category):
        parent.children = saved[1]
        old_parent.children = saved[0]
        _relocate(state, category, old_parent)
        raise ApiError(400, "Could not move category")
    for position, cid in enumerate(parent.children, start=1):
        state.categories[cid].position = position
    category.updated_at = now()
    return True


def _relocate(state: CatalogState, category: Category, parent: Category) -> None:
    category.parent_id = parent.id
    for node in _subtree(state, category):
        up = state.categories[node.parent_id]
        node.path, node.level = f"{up.path}/{node.id}", up.level + 1


def delete_category(call: Call) -> bool:
    state = call.state
    category = _get(state, call.int_param("categoryId"))
    if category.level <= 1:
        raise ApiError(400, "Cannot delete category with id %1", [category.id])
    doomed = {c.id for c in _subtree(state, category)}
    state.categories[category.parent_id].children.remove(category.id)
    for cid in doomed:
        del state.categories[cid]
        state.drop_urls(("category", cid))
    for product in state.products.values():
        if product.category_links:
            product.category_links = [
                link for link in product.category_links if int(link["category_id"]) not in doomed
            ]
    return True


def category_products(call: Call) -> list[dict[str, Any]]:
    """``GET /V1/categories/{categoryId}/products``."""
    state = call.state
    cid = _get(state, call.int_param("categoryId")).id
    return [
        {"sku": p.sku, "position": link["position"], "category_id": str(cid)}
        for p in state.products.values()
        for link in p.category_links
        if int(link["category_id"]) == cid
    ]


def assign_product(call: Call) -> bool:
    """``POST``/``PUT /V1/categories/{categoryId}/products`` ``{"productLink": {...}}``."""
    state = call.state
    cid = _get(state, call.int_param("categoryId")).id
    link = call.part("productLink")
    product = state.product_by_sku(str(link.get("sku") or ""))
    if product is None:
        raise product_not_found()
    links = [x for x in product.category_links if int(x["category_id"]) != cid]
    links.append({"position": int(link.get("position") or 0), "category_id": str(cid)})
    product.category_links = links
    return True


def unassign_product(call: Call) -> bool:
    state = call.state
    cid = _get(state, call.int_param("categoryId")).id
    product = state.product_by_sku(call.params["sku"])
    if product is None:
        raise product_not_found()
    links = [x for x in product.category_links if int(x["category_id"]) != cid]
    if len(links) == len(product.category_links):
        raise ApiError(400, "The category doesn't contain the specified product.")
    product.category_links = links
    return True
