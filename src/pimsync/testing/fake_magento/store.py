"""Store topology, request scope and the in-memory records behind the fake.

Per-store values are modelled as Magento's EAV tables are: every product and category keeps a
``values`` map from store id to ``{attribute_code: value}``. Store 0 holds the global (admin)
values; a store-view id holds only the overrides written through that store view. A read at a
store view merges the overrides over the global values, so an attribute without an override
"uses the default value" and follows later global writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Values = dict[int, dict[str, Any]]

_LOCALES = {"default": "en_US", "en": "en_US", "fr": "fr_FR", "de": "de_DE", "nl": "nl_NL"}


@dataclass(frozen=True, slots=True)
class StoreView:
    """A store view to create; pass plain codes to `FakeMagento(stores=...)` for the defaults."""

    code: str
    website: str = "base"
    locale: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Store:
    id: int
    code: str
    name: str
    website_id: int
    group_id: int
    locale: str


@dataclass(frozen=True, slots=True)
class Website:
    id: int
    code: str
    name: str
    store_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a request runs: the URL store segment and the store/website it resolves to.

    ``code`` is None for a plain ``/rest/V1`` URL, which runs in the default store view; that
    difference matters only for creates, which Magento writes globally without a store code.
    """

    code: str | None
    store_id: int
    website_id: int

    @property
    def plain(self) -> bool:
        return self.code is None


class StoreConfig:
    """Websites, store groups and store views, numbered as on a fresh install."""

    ROOT_CATEGORY_ID = 2

    def __init__(self, stores: Sequence[str | StoreView], websites: Sequence[str]) -> None:
        if not stores:
            raise ValueError("at least one store view is required")
        site_codes = list(dict.fromkeys(websites))
        views = [s if isinstance(s, StoreView) else StoreView(s) for s in stores]
        for view in views:
            if view.website not in site_codes:
                site_codes.append(view.website)
            if view.code in ("all", "admin", "V1", "async"):
                raise ValueError(f"reserved store code {view.code!r}")
        self.stores: dict[int, Store] = {}
        for store_id, view in enumerate(views, start=1):
            site_id = site_codes.index(view.website) + 1
            locale = view.locale or _LOCALES.get(view.code, f"{view.code}_{view.code.upper()}")
            name = view.name or ("Default Store View" if view.code == "default" else view.code)
            self.stores[store_id] = Store(store_id, view.code, name, site_id, site_id, locale)
        self.websites: dict[int, Website] = {}
        for site_id, code in enumerate(site_codes, start=1):
            ids = tuple(s.id for s in self.stores.values() if s.website_id == site_id)
            name = "Main Website" if code == "base" else code
            self.websites[site_id] = Website(site_id, code, name, ids)
        self.by_code = {s.code: s for s in self.stores.values()}
        self.default_store = self.stores[1]
        self._scopes: dict[str | None, Scope] = {
            None: Scope(None, 1, self.default_store.website_id),
            "all": Scope("all", 0, 0),
        }
        for store in self.stores.values():
            self._scopes[store.code] = Scope(store.code, store.id, store.website_id)

    def scope(self, code: str | None) -> Scope | None:
        """The scope for a URL store segment (None: plain ``/rest/V1``), or None if unknown."""
        return self._scopes.get(code)

    def is_store_code(self, code: str) -> bool:
        return code in self._scopes and code is not None

    def store_ids_of_websites(self, website_ids: Iterable[int]) -> list[int]:
        out: list[int] = []
        for site_id in website_ids:
            site = self.websites.get(site_id)
            if site is not None:
                out.extend(site.store_ids)
        return out

    def code_of(self, store_id: int) -> str:
        return "all" if store_id == 0 else self.stores[store_id].code


# --- records -------------------------------------------------------------------------------


@dataclass(slots=True)
class Option:
    id: int
    label: str
    sort_order: int = 0
    is_default: bool = False
    store_labels: dict[int, str] = field(default_factory=dict)


@dataclass(slots=True)
class Attribute:
    id: int
    code: str
    frontend_input: str
    scope: str  # "global" | "website" | "store"
    label: str
    backend_type: str
    is_required: bool = False
    is_user_defined: bool = True
    is_unique: bool = False
    default_value: str | None = None
    store_labels: dict[int, str] = field(default_factory=dict)
    options: dict[int, Option] = field(default_factory=dict)
    # Source-model options (visibility, status, tax class): fixed, not stored as EAV options.
    fixed_options: tuple[tuple[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_table_options(self) -> bool:
        return self.frontend_input in ("select", "multiselect") and not self.fixed_options


@dataclass(slots=True)
class AttributeGroup:
    id: int
    name: str
    set_id: int


@dataclass(slots=True)
class AttributeSet:
    id: int
    name: str
    sort_order: int
    entity_type_id: int
    # attribute code -> (group id, sort order, entity_attribute id)
    attributes: dict[str, tuple[int, int, int]] = field(default_factory=dict)


@dataclass(slots=True)
class MediaEntry:
    id: int
    file: str
    media_type: str = "image"
    label: str | None = None
    position: int = 0
    disabled: bool = False
    types: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SuperAttribute:
    """A configurable option (``catalog_product_super_attribute``)."""

    id: int
    attribute_id: int
    label: str
    position: int = 0
    is_use_default: bool = True


@dataclass(slots=True)
class Product:
    id: int
    sku: str
    type_id: str
    attribute_set_id: int
    created_at: str
    updated_at: str
    values: Values
    website_ids: list[int]
    category_links: list[dict[str, Any]] = field(default_factory=list)
    stock: dict[str, Any] = field(default_factory=dict)
    media: list[MediaEntry] = field(default_factory=list)
    tier_prices: list[Any] = field(default_factory=list)
    product_links: list[Any] = field(default_factory=list)
    options: list[Any] = field(default_factory=list)
    super_attributes: list[SuperAttribute] = field(default_factory=list)
    children: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Category:
    id: int
    parent_id: int
    path: str
    level: int
    position: int
    created_at: str
    updated_at: str
    values: Values
    children: list[int] = field(default_factory=list)


# --- scoped values -------------------------------------------------------------------------


def value_at(values: Values, store_id: int, code: str) -> Any:
    """One attribute as a store view sees it: its override, else the global value."""
    if store_id:
        over = values.get(store_id)
        if over is not None and code in over:
            return over[code]
    return values[0].get(code)


def merged(values: Values, store_id: int) -> dict[str, Any]:
    """All attributes as a store view sees them (store 0: the global values)."""
    base = values[0]
    over = values.get(store_id) if store_id else None
    if not over:
        return base
    out = dict(base)
    out.update(over)
    return out


def write_targets(
    attr_scope: str, scope: Scope, *, is_new: bool, config: StoreConfig
) -> tuple[int, ...]:
    """The store ids a write of one attribute lands on, following Magento's fallback rules.

    - ``all`` (store 0) and global attributes: the global value only.
    - Create through plain ``/rest/V1``: "all values set globally".
    - Create through a store view: global values (the entity needs defaults) plus a store
      override for store/website attributes (Magento's ``_insertAttribute``).
    - Update through a store view or plain ``/rest/V1`` (the default store view): an override on
      that store view; a website-scoped attribute on every store view of its website.
    """
    if attr_scope == "global" or scope.store_id == 0 or (is_new and scope.plain):
        return (0,)
    if attr_scope == "website":
        stores = config.websites[scope.website_id].store_ids
    else:
        stores = (scope.store_id,)
    return (0, *stores) if is_new else stores


def copy_values(values: Values) -> Values:
    return {store_id: dict(vals) for store_id, vals in values.items()}


def overrides_by_code(values: Values, config: StoreConfig) -> dict[str, dict[str, Any]]:
    """The store-view overrides keyed by store code (what "Use Default Value" is unticked for)."""
    return {config.code_of(sid): dict(vals) for sid, vals in values.items() if sid and vals}
