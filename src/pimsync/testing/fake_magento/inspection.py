"""Test-side access to the fake: read its state and seed fixtures without HTTP.

Views are the REST shapes (``fm.product("A")`` is what ``GET /rest/all/V1/products/A`` answers)
and copies, so tests can keep them without racing the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import attributes, categories, products, sets
from .bulk import BulkManager
from .context import Call
from .product_view import media_view, product_view
from .state import DEFAULT_SET_ID, CatalogState
from .store import overrides_by_code


class Inspection:
    """Mixed into `FakeMagento`: everything here takes the state lock."""

    _state: CatalogState
    _bulk: BulkManager

    def _store_id(self, store: str | None) -> int:
        if store in (None, "all", "admin"):
            return 0
        found = self._state.config.by_code.get(str(store))
        if found is None:
            raise KeyError(f"unknown store code {store!r}")
        return found.id

    # --- products ---------------------------------------------------------------------------

    @property
    def products(self) -> dict[str, dict[str, Any]]:
        """Every product by SKU, with global (store 0) values."""
        with self._state.lock:
            return {p.sku: product_view(self._state, p, 0) for p in self._state.products.values()}

    def product_count(self) -> int:
        return len(self._state.products)

    def product(self, sku: str, store: str | None = None) -> dict[str, Any] | None:
        """One product as a store view sees it (overrides merged over global values).

        ``store=None`` or ``"all"`` gives the global values only.
        """
        with self._state.lock:
            found = self._state.product_by_sku(sku)
            return (
                None if found is None else product_view(self._state, found, self._store_id(store))
            )

    def product_overrides(self, sku: str) -> dict[str, dict[str, Any]]:
        """Store-view overrides by store code; an attribute absent here "uses the default value"."""
        with self._state.lock:
            found = self._state.product_by_sku(sku)
            if found is None:
                raise KeyError(sku)
            return overrides_by_code(found.values, self._state.config)

    def configurable_children(self, sku: str) -> list[str]:
        with self._state.lock:
            found = self._state.product_by_sku(sku)
            if found is None:
                raise KeyError(sku)
            return [
                self._state.products[c].sku for c in found.children if c in self._state.products
            ]

    def media(self, sku: str) -> list[dict[str, Any]]:
        with self._state.lock:
            found = self._state.product_by_sku(sku)
            if found is None:
                raise KeyError(sku)
            return [media_view(e) for e in found.media]

    # --- catalogue structure ----------------------------------------------------------------

    @property
    def categories(self) -> dict[int, dict[str, Any]]:
        """Every category by id (including root 1 and default root 2), global values."""
        with self._state.lock:
            return {
                cid: categories.category_view(self._state, c, 0)
                for cid, c in self._state.categories.items()
            }

    def category(self, category_id: int, store: str | None = None) -> dict[str, Any] | None:
        with self._state.lock:
            found = self._state.categories.get(category_id)
            if found is None:
                return None
            return categories.category_view(self._state, found, self._store_id(store))

    def category_overrides(self, category_id: int) -> dict[str, dict[str, Any]]:
        with self._state.lock:
            return overrides_by_code(self._state.categories[category_id].values, self._state.config)

    @property
    def attributes(self) -> dict[str, dict[str, Any]]:
        with self._state.lock:
            return {c: attributes.attribute_view(a) for c, a in self._state.attributes.items()}

    def attribute_options(self, code: str) -> dict[str, int]:
        """Admin label -> option id."""
        with self._state.lock:
            attr = self._state.attributes[code]
            return {o.label: o.id for o in attr.options.values()}

    @property
    def attribute_sets(self) -> dict[int, dict[str, Any]]:
        """Every set (all entity types) with its ``attribute_codes`` and ``groups`` (name -> id)."""
        with self._state.lock:
            out = {}
            for set_id, aset in self._state.attribute_sets.items():
                groups = {g.name: g.id for g in self._state.groups.values() if g.set_id == set_id}
                view = sets.set_view(aset)
                out[set_id] = {**view, "attribute_codes": list(aset.attributes), "groups": groups}
            return out

    def url_rewrites(self, store: str = "default") -> dict[str, str]:
        """Request path -> ``"product:<sku>"`` or ``"category:<id>"`` for one store view."""
        store_id = self._store_id(store)
        with self._state.lock:
            out = {}
            for (sid, path), (kind, eid) in self._state.url_owner.items():
                if sid == store_id:
                    ref = self._state.products[eid].sku if kind == "product" else str(eid)
                    out[path] = f"{kind}:{ref}"
            return out

    # --- bulk -------------------------------------------------------------------------------

    @property
    def bulk_uuids(self) -> list[str]:
        with self._state.lock:
            return self._bulk.uuids()

    def bulk_status(self, bulk_uuid: str) -> dict[str, Any] | None:
        """The detailed status of one bulk, as ``GET /V1/bulk/{uuid}/detailed-status``."""
        with self._state.lock:
            return self._bulk.bulk_view(bulk_uuid)

    # --- seeding ----------------------------------------------------------------------------

    def _invoke(
        self,
        handler: Callable[[Call], Any],
        body: Any,
        *,
        store: str | None = "all",
        params: dict[str, str] | None = None,
    ) -> Any:
        """Run a service as a request would (raises `ApiError` on a Magento error)."""
        scope = self._state.config.scope(store)
        if scope is None:
            raise KeyError(f"unknown store code {store!r}")
        with self._state.lock:
            return handler(Call(self._state, scope, params or {}, body))

    def add_product(self, product: dict[str, Any], *, store: str | None = "all") -> dict[str, Any]:
        """Save a product as ``POST /rest/<store>/V1/products`` would; answers the saved view.

        Seeding does not count in `writes_by_sku`.
        """
        sku = str(product.get("sku") or "").strip()
        counter = self._state.writes_by_sku
        with self._state.lock:
            before = counter.get(sku)
            try:
                result: dict[str, Any] = self._invoke(
                    products.save_product, {"product": product}, store=store
                )
            finally:
                if before is None:
                    counter.pop(sku, None)
                else:
                    counter[sku] = before
        return result

    def add_category(
        self,
        name: str,
        *,
        parent_id: int = 2,
        url_key: str | None = None,
        store: str | None = "all",
    ) -> int:
        category: dict[str, Any] = {"name": name, "parent_id": parent_id, "is_active": True}
        if url_key is not None:
            category["custom_attributes"] = [{"attribute_code": "url_key", "value": url_key}]
        view = self._invoke(categories.save_category, {"category": category}, store=store)
        return int(view["id"])

    def add_attribute(
        self,
        code: str,
        *,
        frontend_input: str = "select",
        options: Iterable[str] = (),
        scope: str = "global",
        label: str | None = None,
        attribute_set_id: int | None = DEFAULT_SET_ID,
        is_required: bool = False,
    ) -> dict[str, Any]:
        """Create an attribute with options and (by default) put it in the Default set."""
        body = {
            "attribute": {
                "attribute_code": code,
                "frontend_input": frontend_input,
                "default_frontend_label": label or code.replace("_", " ").title(),
                "scope": scope,
                "is_required": is_required,
                "options": [{"label": option} for option in options],
            }
        }
        view: dict[str, Any] = self._invoke(
            lambda call: attributes.save_attribute(call, create=True), body
        )
        if attribute_set_id is not None:
            with self._state.lock:
                group = min(
                    g.id for g in self._state.groups.values() if g.set_id == attribute_set_id
                )
                self._state.assign(attribute_set_id, group, code)
        return view

    def add_attribute_set(self, name: str, *, skeleton_id: int = DEFAULT_SET_ID) -> int:
        body = {"attributeSet": {"attribute_set_name": name}, "skeletonId": skeleton_id}
        view = self._invoke(lambda call: sets.create_set(call, with_entity_type=False), body)
        return int(view["attribute_set_id"])
