"""Writes for the mock PIM: Akeneo's merge semantics and validation for PATCH/POST/DELETE.

Top-level fields replace; `values` merge per attribute and per (locale, scope) entry, and a `null`
(or empty) `data` removes the entry; `associations` merge per association type. A variant or a
product model may only carry the attributes of its own level of the family variant. Every write
sets `updated` to the mock clock's second. Used by `fake_pim.FakePim` for HTTP and for its Python
helpers (`update_product`, `update_model`, ...).
"""

from __future__ import annotations

from typing import Any

import orjson

from pimsync.testing.catalog import Catalog
from pimsync.testing.fake_pim_render import Renderer
from pimsync.testing.fake_pim_search import ApiError
from pimsync.testing.fake_pim_structure import (
    CHANNEL,
    CURRENCIES,
    FAMILY_VARIANT,
    JSON,
    LOCALES,
    Values,
)

_DOC = "http://api.akeneo.com/api-reference.html"
_SHARED = {"family", "parent", "categories", "values", "associations", "quantified_associations"}
_PRODUCT_FIELDS = _SHARED | {"uuid", "identifier", "enabled", "groups"}
_MODEL_FIELDS = _SHARED | {"code", "family_variant"}
# Read-only properties a client may send back unchanged: ignored, as Akeneo does.
_READ_ONLY = {"created", "updated", "metadata", "_links", "root_parent"} | {
    "quality_scores",
    "completenesses",
}
_SYMBOLS = {"KILOGRAM": "kg", "GRAM": "g"}


def copy_json(value: Any) -> Any:
    """Deep copy (generated records share read-only fragments, so never mutate them in place)."""
    return orjson.loads(orjson.dumps(value))


def _invalid(
    prop: str, message: str, attribute: str | None = None, entry: JSON | None = None
) -> ApiError:
    error: JSON = {"property": prop, "message": message}
    if attribute is not None:
        error.update(
            attribute=attribute,
            locale=(entry or {}).get("locale"),
            scope=(entry or {}).get("scope"),
        )
    return ApiError(422, "Validation failed.", errors=[error])


def _unknown_property(prop: str, anchor: str) -> ApiError:
    return ApiError(
        422,
        f'Property "{prop}" does not exist. Check the expected format on the API documentation.',
        _links={"documentation": {"href": f"{_DOC}#{anchor}"}},
    )


class Writer:
    """Applies writes to a `Catalog`'s overrides."""

    def __init__(self, catalog: Catalog, renderer: Renderer) -> None:
        self.catalog, self.renderer = catalog, renderer
        self.structure = catalog.structure

    # -- values --------------------------------------------------------------------------

    def _check_entry(self, code: str, entry: Any) -> None:
        attribute = self.structure.attributes.get(code)
        if attribute is None:
            raise ApiError(
                422,
                f'Attribute "{code}" does not exist. Check the expected format on '
                "the API documentation.",
            )
        if not isinstance(entry, dict) or not {"locale", "scope", "data"} <= entry.keys():
            raise ApiError(
                422,
                f'Property "{code}" expects an array with the keys "locale", "scope" and "data".',
            )
        locale, scope, data = entry["locale"], entry["scope"], entry["data"]
        if attribute["localizable"] and locale is None:
            raise ApiError(422, f'Attribute "{code}" expects a locale, none given.')
        if not attribute["localizable"] and locale is not None:
            raise ApiError(422, f'Attribute "{code}" does not expect a locale, "{locale}" given.')
        if locale is not None and locale not in LOCALES:
            raise ApiError(
                422,
                f'Attribute "{code}" expects an existing and activated locale, "{locale}" given.',
            )
        if attribute["scopable"] and scope is None:
            raise ApiError(422, f'Attribute "{code}" expects a scope, none given.')
        if not attribute["scopable"] and scope is not None:
            raise ApiError(422, f'Attribute "{code}" does not expect a scope, "{scope}" given.')
        if scope is not None and scope != CHANNEL:
            raise ApiError(422, f'Attribute "{code}" expects an existing scope, "{scope}" given.')
        if data is None or data == "" or data == []:
            return
        kind = attribute["type"].removeprefix("pim_catalog_")
        options = self.structure.options.get(code, {})
        ok = {
            "simpleselect": isinstance(data, str) and data in options,
            "multiselect": isinstance(data, list) and all(d in options for d in data),
            "boolean": isinstance(data, bool),
            "number": isinstance(data, str | int | float) and not isinstance(data, bool),
            "metric": isinstance(data, dict) and data.get("unit") in _SYMBOLS and "amount" in data,
            "price_collection": isinstance(data, list)
            and all(
                isinstance(p, dict) and p.get("currency") in CURRENCIES and "amount" in p
                for p in data
            ),
            "image": isinstance(data, str) and self.catalog.media(data) is not None,
        }.get(kind, isinstance(data, str))
        if not ok:
            raise _invalid(
                "values",
                f'The value {data!r} is not valid for the attribute "{code}" '
                f"({attribute['type']}).",
                code,
                entry,
            )

    def merge_values(self, current: Values, patch: Any, allowed: tuple[str, ...] | None) -> Values:
        """`current` with `patch` merged in, per attribute and (locale, scope)."""
        if not isinstance(patch, dict):
            raise ApiError(422, 'Property "values" expects an array as data.')
        merged = dict(current)
        for code, entries in patch.items():
            if not isinstance(entries, list):
                raise ApiError(422, f'Property "{code}" expects an array as data.')
            for entry in entries:
                self._check_entry(code, entry)
            if allowed is not None and code not in allowed:
                raise _invalid(
                    "attribute",
                    f'Cannot set the property "{code}" to this entity as '
                    "it is not in the attribute set",
                    code,
                )
            # Keyed by (locale, scope): a patched entry keeps its place, a new one goes last.
            kept = {(e["locale"], e["scope"]): e for e in merged.get(code, [])}
            for entry in entries:
                where, data = (entry["locale"], entry["scope"]), copy_json(entry["data"])
                if data in (None, "", []):
                    kept.pop(where, None)
                    continue
                if isinstance(data, dict) and "unit" in data:
                    data["symbol"] = _SYMBOLS[data["unit"]]
                kept[where] = {"locale": where[0], "scope": where[1], "data": data}
            if kept:
                merged[code] = list(kept.values())
            else:
                merged.pop(code, None)
        return merged

    def _level(self, family_variant: str | None, depth: int) -> tuple[str, ...] | None:
        return None if family_variant is None else self.structure.level_attrs[family_variant][depth]

    def _model_depth(self, record: JSON) -> int:
        return 2 if record["parent"] else 1

    # -- top-level fields ----------------------------------------------------------------

    def _categories(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise ApiError(422, 'Property "categories" expects an array as data.')
        for code in value:
            if code not in self.structure.categories:
                raise ApiError(
                    422,
                    'Property "categories" expects a valid category code. The '
                    f'category does not exist, "{code}" given.',
                )
        return list(dict.fromkeys(value))

    def _associations(self, current: JSON, patch: Any, *, legacy: bool) -> JSON:
        """Merge per association type; `/products` refers to products by identifier."""
        if not isinstance(patch, dict) or not all(isinstance(v, dict) for v in patch.values()):
            raise ApiError(422, 'Property "associations" expects an array as data.')
        merged: JSON = copy_json(current)
        for kind, links in patch.items():
            if kind not in self.structure.association_types:
                raise ApiError(
                    422,
                    'Property "associations" expects a valid association type '
                    f'code. The association type does not exist, "{kind}" given.',
                )
            entry = merged.setdefault(kind, {"products": [], "product_models": [], "groups": []})
            for target, refs in links.items():
                if target == "products" and legacy:
                    found = (self.catalog.index_of_identifier(r) for r in refs)
                    refs = [self.catalog.uuid_of(i) for i in found if i is not None]
                entry[target] = list(refs)
        return merged

    # -- products ------------------------------------------------------------------------

    def write_product(
        self,
        index: int | None,
        patch: Any,
        now: int,
        *,
        uuid: str | None = None,
        identifier: str | None = None,
        legacy: bool = False,
    ) -> tuple[int, bool]:
        """Patch product `index`, or create it when `index` is None or deleted.

        Returns (index, created). `uuid`/`identifier` come from the URL of the request.
        """
        if not isinstance(patch, dict):
            raise ApiError(400, "Invalid json message received")
        for key in patch:
            if key not in _PRODUCT_FIELDS | _READ_ONLY:
                raise _unknown_property(key, "patch_products_uuid__uuid_")
        current = self.catalog.product_record(index) if index is not None else None
        created = current is None
        if uuid is not None and patch.get("uuid", uuid) != uuid:
            raise ApiError(
                422,
                f'The uuid "{patch["uuid"]}" provided in the request body must '
                f'match the uuid "{uuid}" provided in the url.',
            )
        if created:
            if index is None:
                index = self.catalog.new_index()
            new_uuid = uuid or patch.get("uuid") or self.catalog.uuid(index)
            other = self.catalog.index_of_uuid(str(new_uuid))
            if other is not None and other != index and self.catalog.product_record(other):
                raise _invalid("uuid", f'The "{new_uuid}" uuid is already used by a product.')
            current = {
                "uuid": str(new_uuid).lower(),
                "enabled": True,
                "family": None,
                "categories": [],
                "groups": [],
                "parent": None,
                "values": {},
                "created": now,
                "updated": now,
                "associations": {},
                "quantified_associations": {},
            }
        assert index is not None and current is not None
        record = copy_json(current)
        record["updated"] = now
        full, _ = self.renderer.full_values(current)
        if "enabled" in patch:
            if not isinstance(patch["enabled"], bool):
                raise ApiError(
                    422,
                    f'Property "enabled" expects a boolean as data, "{patch["enabled"]}" given.',
                )
            record["enabled"] = patch["enabled"]
        if "family" in patch:
            family = patch["family"]
            if family is not None and family not in self.structure.families:
                raise ApiError(
                    422,
                    'Property "family" expects a valid family code. The family '
                    f'does not exist, "{family}" given.',
                )
            record["family"] = family
        if "parent" in patch:
            record["parent"] = self._product_parent(patch["parent"], record)
        elif record["parent"] and "family" in patch:
            record["parent"] = self._product_parent(record["parent"], record)
        if "categories" in patch:
            record["categories"] = self._categories(patch["categories"])
        if patch.get("groups"):
            raise ApiError(
                422,
                'Property "groups" expects a valid group code. The group does '
                f'not exist, "{patch["groups"][0]}" given.',
            )
        values_patch = dict(patch.get("values") or {})
        sku = identifier if created and identifier is not None else patch.get("identifier")
        if sku is not None:
            values_patch["sku"] = [{"locale": None, "scope": None, "data": sku}]
        allowed = None
        if record["parent"]:
            allowed = self._level(FAMILY_VARIANT.get(record["family"] or ""), -1)
        values = self.merge_values(full if not created else {}, values_patch, allowed)
        if record["parent"]:  # own values: drop what the model (now) provides
            values = {k: v for k, v in values.items() if allowed is None or k in allowed}
        record["values"] = copy_json(values)  # unpatched entries may be shared fragments
        self._check_unique(index, values)
        if "associations" in patch:
            record["associations"] = self._associations(
                record["associations"], patch["associations"], legacy=legacy
            )
        if "quantified_associations" in patch:
            record["quantified_associations"] = copy_json(patch["quantified_associations"])
        self.catalog.put_product(index, record)
        return index, created

    def _product_parent(self, parent: Any, record: JSON) -> str | None:
        if parent is None:
            return None
        model = self.catalog.model_record(parent) if isinstance(parent, str) else None
        if model is None:
            raise ApiError(
                422,
                'Property "parent" expects a valid product model code. The '
                f'product model does not exist, "{parent}" given.',
            )
        levels = len(self.structure.variants[model["family_variant"]]["variant_attribute_sets"])
        if self._model_depth(model) != levels:
            raise _invalid("parent", f'The product model "{parent}" cannot have product variants.')
        if record["family"] is None:
            record["family"] = model["family"]
        if record["family"] != model["family"]:
            raise _invalid("family", "The variant product family must be the same than its parent")
        return str(parent)

    def _check_unique(self, index: int, values: Values) -> None:
        sku = values.get("sku")
        if sku:
            other = self.catalog.index_of_identifier(str(sku[0]["data"]))
            if other is not None and other != index:
                raise _invalid(
                    "identifier",
                    f"The value {sku[0]['data']} is already set on "
                    "another product for the unique attribute sku",
                    "sku",
                    sku[0],
                )

    def delete_product(self, index: int | None) -> bool:
        if index is None or self.catalog.product_record(index) is None:
            return False
        self.catalog.put_product(index, None)
        return True

    # -- product models ------------------------------------------------------------------

    def write_model(self, code: str, patch: Any, now: int) -> bool:
        """Patch or create the product model `code`; returns True if it was created."""
        if not isinstance(patch, dict):
            raise ApiError(400, "Invalid json message received")
        for key in patch:
            if key not in _MODEL_FIELDS | _READ_ONLY:
                raise _unknown_property(key, "patch_product_models__code_")
        if patch.get("code", code) != code:
            raise ApiError(
                422,
                f'The code "{patch["code"]}" provided in the request body must '
                f'match the code "{code}" provided in the url.',
            )
        current = self.catalog.model_record(code)
        created = current is None
        if current is None:
            fv = patch.get("family_variant")
            if fv not in self.structure.variants:
                raise ApiError(
                    422,
                    'Property "family_variant" expects a valid family variant '
                    f'code. The family variant does not exist, "{fv}" given.',
                )
            current = {
                "code": code,
                "family": self.structure.variants[fv]["family"],
                "family_variant": fv,
                "parent": None,
                "categories": [],
                "values": {},
                "created": now,
                "updated": now,
                "associations": {},
                "quantified_associations": {},
            }
        record = copy_json(current)
        record["updated"] = now
        for key in ("family", "family_variant"):
            if key in patch and patch[key] != record[key]:
                raise ApiError(422, f'Property "{key}" cannot be modified, "{patch[key]}" given.')
        if "parent" in patch and patch["parent"] != record["parent"]:
            parent = self.catalog.model_record(patch["parent"]) if patch["parent"] else None
            levels = len(
                self.structure.variants[record["family_variant"]]["variant_attribute_sets"]
            )
            if patch["parent"] and (
                parent is None
                or parent["parent"]
                or levels < 2
                or parent["family_variant"] != record["family_variant"]
            ):
                raise _invalid(
                    "parent",
                    f'The product model "{patch["parent"]}" cannot be the '
                    "parent of this product model.",
                )
            if not created and not patch["parent"]:
                raise _invalid("parent", "A sub product model cannot become a root model.")
            record["parent"] = patch["parent"]
        if "categories" in patch:
            record["categories"] = self._categories(patch["categories"])
        allowed = self._level(record["family_variant"], 1 if record["parent"] else 0)
        record["values"] = self.merge_values(record["values"], patch.get("values", {}), allowed)
        if "associations" in patch:
            record["associations"] = self._associations(
                record["associations"], patch["associations"], legacy=False
            )
        self.catalog.put_model(record)
        return created

    # -- catalog structure ---------------------------------------------------------------

    def _labels(self, current: dict[str, str], patch: Any) -> dict[str, str]:
        if not isinstance(patch, dict):
            raise ApiError(422, 'Property "labels" expects an array as data.')
        labels = dict(current)
        for locale, label in patch.items():
            if label in (None, ""):
                labels.pop(locale, None)
            else:
                labels[locale] = str(label)
        return labels

    def write_category(self, code: str, patch: Any, now: int) -> bool:
        if not isinstance(patch, dict):
            raise ApiError(400, "Invalid json message received")
        for key in patch:
            if key not in {"code", "parent", "labels", "updated", "position", "_links"}:
                raise _unknown_property(key, "patch_categories__code_")
        categories = self.structure.categories
        created = code not in categories
        record = categories.get(code) or {
            "code": code,
            "parent": None,
            "updated": now,
            "labels": {},
        }
        parent = patch.get("parent", record["parent"])
        if parent is not None and (parent not in categories or parent == code):
            raise ApiError(
                422,
                'Property "parent" expects a valid category code. The category '
                f'does not exist, "{parent}" given.',
            )
        labels = self._labels(record["labels"], patch.get("labels", {}))
        categories[code] = {"code": code, "parent": parent, "updated": now, "labels": labels}
        return created

    def write_option(self, attribute: str, code: str, patch: Any) -> bool:
        """Patch or create an option. Like Akeneo, this does not bump the attribute's `updated`."""
        if not isinstance(patch, dict):
            raise ApiError(400, "Invalid json message received")
        for key in patch:
            if key not in {"code", "attribute", "sort_order", "labels", "_links"}:
                raise _unknown_property(key, "patch_attributes__attribute_code__options__code_")
        options = self.structure.options[attribute]
        created = code not in options
        record = options.get(code) or {
            "code": code,
            "attribute": attribute,
            "sort_order": len(options) + 1,
            "labels": {},
        }
        sort_order = patch.get("sort_order", record["sort_order"])
        if not isinstance(sort_order, int):
            raise ApiError(422, f'Property "sort_order" expects an integer, "{sort_order}" given.')
        options[code] = {
            "code": code,
            "attribute": attribute,
            "sort_order": sort_order,
            "labels": self._labels(record["labels"], patch.get("labels", {})),
        }
        return created
