"""The fake's whole in-memory catalogue, seeded like a fresh Magento 2.4 install.

One re-entrant lock guards everything: the loopback server is threaded and the bulk consumer
runs in the background, and a product save is far too cheap for finer locking to pay off.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from .errors import ApiError
from .store import (
    Attribute,
    AttributeGroup,
    AttributeSet,
    Category,
    Product,
    StoreConfig,
)

PRODUCT_ENTITY_TYPE = 4
DEFAULT_SET_ID = 4
ROOT_CATALOG_ID = 1

OptionAddResult = Literal["id", "id_new_option", "true"]


@dataclass(slots=True)
class Settings:
    """Behaviour switches that emulate version or configuration differences."""

    # Reject select/multiselect values that are not option ids. Magento does NOT (the value is
    # stored and the storefront shows nothing), so this is off by default.
    strict_options: bool = False
    # Return media entry and configurable option ids as JSON strings, as the tutorials show.
    string_ids: bool = False
    # What POST .../options returns: 2.4 "id" ("215"), 2.3 "id_new_option", 2.1-2.2 true.
    option_add_result: OptionAddResult = "id"
    url_suffix: str = ".html"


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


_NON_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """Magento's ``formatUrlKey``: lower-case ASCII, other runs become ``-``, trimmed."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NON_SLUG.sub("-", ascii_text.lower()).strip("-")


# code, input, scope, label, backend type, required, group
_SYSTEM_ATTRIBUTES: tuple[tuple[str, str, str, str, str, bool, str], ...] = (
    ("name", "text", "store", "Product Name", "varchar", True, "Product Details"),
    ("sku", "text", "global", "SKU", "static", True, "Product Details"),
    ("description", "textarea", "store", "Description", "text", False, "Content"),
    ("short_description", "textarea", "store", "Short Description", "text", False, "Content"),
    ("price", "price", "global", "Price", "decimal", True, "Product Details"),
    ("special_price", "price", "global", "Special Price", "decimal", False, "Advanced Pricing"),
    (
        "special_from_date",
        "date",
        "website",
        "Special Price From",
        "datetime",
        False,
        "Advanced Pricing",
    ),
    (
        "special_to_date",
        "date",
        "website",
        "Special Price To",
        "datetime",
        False,
        "Advanced Pricing",
    ),
    ("cost", "price", "global", "Cost", "decimal", False, "Advanced Pricing"),
    ("weight", "weight", "global", "Weight", "decimal", False, "Product Details"),
    ("manufacturer", "select", "global", "Manufacturer", "int", False, "Product Details"),
    ("meta_title", "text", "store", "Meta Title", "varchar", False, "Search Engine Optimization"),
    (
        "meta_keyword",
        "textarea",
        "store",
        "Meta Keywords",
        "text",
        False,
        "Search Engine Optimization",
    ),
    (
        "meta_description",
        "textarea",
        "store",
        "Meta Description",
        "varchar",
        False,
        "Search Engine Optimization",
    ),
    ("image", "media_image", "store", "Base", "varchar", False, "Images"),
    ("small_image", "media_image", "store", "Small", "varchar", False, "Images"),
    ("thumbnail", "media_image", "store", "Thumbnail", "varchar", False, "Images"),
    ("color", "select", "global", "Color", "int", False, "Product Details"),
    ("status", "boolean", "website", "Enable Product", "int", False, "Product Details"),
    ("visibility", "select", "store", "Visibility", "int", False, "Product Details"),
    ("url_key", "text", "store", "URL Key", "varchar", False, "Search Engine Optimization"),
    ("tax_class_id", "select", "website", "Tax Class", "int", False, "Product Details"),
    ("category_ids", "categories", "global", "Categories", "static", False, "Product Details"),
    (
        "options_container",
        "select",
        "store",
        "Display Product Options In",
        "varchar",
        False,
        "Design",
    ),
    ("required_options", "text", "global", "", "static", False, "Product Details"),
    ("has_options", "text", "global", "", "static", False, "Product Details"),
)
_FIXED_OPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "status": (("Enabled", "1"), ("Disabled", "2")),
    "visibility": (
        ("Not Visible Individually", "1"),
        ("Catalog", "2"),
        ("Search", "3"),
        ("Catalog, Search", "4"),
    ),
    "tax_class_id": (("None", "0"), ("Taxable Goods", "2")),
    "options_container": (
        ("Product Info Column", "container1"),
        ("Block after Info Column", "container2"),
    ),
}
# Magento ships color and manufacturer as user-defined attributes (they can be configurable).
_USER_DEFINED_SYSTEM = {"color", "manufacturer"}
_DEFAULT_GROUPS = (
    "Product Details",
    "Content",
    "Images",
    "Search Engine Optimization",
    "Advanced Pricing",
    "Design",
)


class CatalogState:
    """Everything the fake stores, plus id sequences and the URL rewrite index."""

    def __init__(self, config: StoreConfig, settings: Settings | None = None) -> None:
        self.lock = threading.RLock()
        self.config = config
        self.settings = settings or Settings()
        self.products: dict[int, Product] = {}
        self.sku_index: dict[str, int] = {}
        self.categories: dict[int, Category] = {}
        self.attributes: dict[str, Attribute] = {}
        self.attribute_ids: dict[int, str] = {}
        self.attribute_sets: dict[int, AttributeSet] = {}
        self.groups: dict[int, AttributeGroup] = {}
        # URL rewrites: (store id, request path) -> ("product" | "category", entity id).
        self.url_owner: dict[tuple[int, str], tuple[str, int]] = {}
        self.url_paths: dict[tuple[str, int], set[tuple[int, str]]] = {}
        self.media_files: set[str] = set()
        # Forced per-SKU failures, keyed by lower-cased SKU: (error, at bulk accept time).
        self.rejections: dict[str, tuple[ApiError, bool]] = {}
        self.writes_by_sku: Counter[str] = Counter()
        self.product_ids = itertools.count(1)
        self.category_ids = itertools.count(3)
        self.attribute_id_seq = itertools.count(200)
        self.option_ids = itertools.count(4)
        self.set_ids = itertools.count(10)
        self.group_ids = itertools.count(20)
        self.entity_attribute_ids = itertools.count(1)
        self.media_ids = itertools.count(1)
        self.super_attribute_ids = itertools.count(1)
        self._seed()

    # --- lookups used by every service ---------------------------------------------------

    def product_by_sku(self, sku: str) -> Product | None:
        pid = self.sku_index.get(sku.strip().lower())
        return None if pid is None else self.products[pid]

    def attribute(self, code_or_id: str | int) -> Attribute | None:
        key = str(code_or_id)
        attr = self.attributes.get(key)
        if attr is None and key.isdigit():
            code = self.attribute_ids.get(int(key))
            attr = None if code is None else self.attributes.get(code)
        return attr

    def add_attribute(self, attr: Attribute) -> None:
        self.attributes[attr.code] = attr
        self.attribute_ids[attr.id] = attr.code

    def assign(self, set_id: int, group_id: int, code: str, sort_order: int = 0) -> int:
        """Put an attribute in a set (idempotent); return the entity_attribute id."""
        aset = self.attribute_sets[set_id]
        current = aset.attributes.get(code)
        entity_attribute_id = current[2] if current else next(self.entity_attribute_ids)
        aset.attributes[code] = (group_id, sort_order, entity_attribute_id)
        return entity_attribute_id

    # --- URL rewrites ---------------------------------------------------------------------

    def url_conflict(self, owner: tuple[str, int], wanted: set[tuple[int, str]]) -> bool:
        return any(self.url_owner.get(key, owner) != owner for key in wanted)

    def set_urls(self, owner: tuple[str, int], wanted: set[tuple[int, str]]) -> None:
        self.drop_urls(owner)
        for key in wanted:
            self.url_owner[key] = owner
        if wanted:
            self.url_paths[owner] = wanted

    def drop_urls(self, owner: tuple[str, int]) -> None:
        for key in self.url_paths.pop(owner, ()):
            if self.url_owner.get(key) == owner:
                del self.url_owner[key]

    # --- seed -----------------------------------------------------------------------------

    def _seed(self) -> None:
        stamp = now()
        self.categories[ROOT_CATALOG_ID] = Category(
            ROOT_CATALOG_ID, 0, "1", 0, 0, stamp, stamp,
            {0: {"name": "Root Catalog", "is_active": True, "include_in_menu": True}},
            [2],
        )  # fmt: skip
        self.categories[2] = Category(
            2, 1, "1/2", 1, 1, stamp, stamp,
            {0: {"name": "Default Category", "is_active": True, "include_in_menu": True}},
        )  # fmt: skip
        # Sets 1-3 belong to other entity types, as on a real install: an unfiltered
        # /V1/eav/attribute-sets/list returns several sets named "Default".
        for set_id, entity_type in ((1, 1), (2, 2), (3, 3)):
            self.attribute_sets[set_id] = AttributeSet(set_id, "Default", 2, entity_type)
            self.groups[set_id] = AttributeGroup(set_id, "General", set_id)
        self.attribute_sets[DEFAULT_SET_ID] = AttributeSet(
            DEFAULT_SET_ID, "Default", 1, PRODUCT_ENTITY_TYPE
        )
        group_of: dict[str, int] = {}
        for group_id, name in enumerate(_DEFAULT_GROUPS, start=7):
            self.groups[group_id] = AttributeGroup(group_id, name, DEFAULT_SET_ID)
            group_of[name] = group_id
        for attr_id, spec in enumerate(_SYSTEM_ATTRIBUTES, start=73):
            code, frontend_input, scope, label, backend, required, group = spec
            attr = Attribute(
                attr_id, code, frontend_input, scope, label, backend,
                is_required=required,
                is_user_defined=code in _USER_DEFINED_SYSTEM,
                is_unique=code == "sku",
                fixed_options=_FIXED_OPTIONS.get(code, ()),
            )  # fmt: skip
            self.add_attribute(attr)
            self.assign(DEFAULT_SET_ID, group_of[group], code, attr_id)
