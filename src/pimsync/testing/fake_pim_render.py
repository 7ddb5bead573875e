"""Render catalog records as Akeneo's standard-format JSON, for the mock PIM.

Two paths give the same bytes. `Renderer.product`/`model` build dicts (single GETs, the Python
helpers, filtered lists, modified products). `Renderer.product_json` serves unmodified products in
unfiltered lists, the hot path of a full import: it joins pre-serialized fragments (cached per
values template and per model) with the few per-product parts, about 3x faster. The tests check
that both paths produce identical bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from pimsync.testing.catalog import Catalog, base_updated
from pimsync.testing.fake_pim_structure import JSON, TemplateKey, Values

API = "/api/rest/v1"
_PER_ITEM = ("sku", "name", "ean", "picture")  # attributes whose value is made per product


@dataclass(frozen=True, slots=True)
class View:
    """How one request wants items rendered."""

    base: str  # scheme://host[:port] of the request, for absolute links
    iso: Callable[[int], str]  # epoch seconds -> ISO-8601 in the PIM's time zone
    attributes: frozenset[str] | None = None
    locales: frozenset[str] | None = None
    scope: str | None = None
    with_options: bool = False
    legacy: bool = False  # `/products`: `identifier` instead of `uuid`, associations by identifier
    links: bool = False  # list items carry `_links.self`

    @property
    def plain(self) -> bool:
        """No value filtering and no option labels: the view the fast path serves."""
        unfiltered = self.attributes is None and self.locales is None and self.scope is None
        return unfiltered and not self.with_options


class Renderer:
    """Turns catalog records into JSON for a given `View` (see the module docstring)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        attributes = catalog.structure.attributes
        self.images = {c for c, a in attributes.items() if a["type"] == "pim_catalog_image"}
        self.selects = {c for c, a in attributes.items() if a["type"].endswith("select")}
        self._chain: dict[str, tuple[Values, list[str], bytes, bytes]] = {}
        self._chunks: dict[TemplateKey, list[bytes | str]] = {}
        self._axes = {
            code: {option: _pair(code, value) for option, value in options.items()}
            for code, options in catalog.values.options.items()
        }
        structure = catalog.structure
        self._level_axes = {  # axes of each variant level, by that level's attributes
            tuple(level["attributes"]): tuple(level["axes"])
            for variant in structure.variants.values()
            for level in variant["variant_attribute_sets"]
        }
        # `"name":[...]` around the product number, per family and name template.
        self._names = {
            family: [tuple(b"".join(p) for p in _name_segments(prefixes)) for prefixes in names]
            for family, names in catalog.values.names.items()
        }
        self._version = -1

    def chain(self, code: str) -> tuple[Values, list[str], bytes, bytes]:
        """A model's values and categories with its root's, and both serialized (cached)."""
        # Variants of a model are contiguous, so a small cache serves a scan (and bounds memory).
        if self._version != self.catalog.model_version or len(self._chain) > 512:
            self._chain, self._version = {}, self.catalog.model_version
        found = self._chain.get(code)
        if found is None:
            record = self.catalog.model_record(code)
            values: Values = {}
            categories: list[str] = []
            if record is not None:
                if record["parent"]:
                    values, categories, _, _ = self.chain(record["parent"])
                values = {**values, **record["values"]}
                categories = categories + [c for c in record["categories"] if c not in categories]
            encoded = b",".join(_pair(k, v) for k, v in values.items())
            found = self._chain[code] = (values, categories, encoded, orjson.dumps(categories))
        return found

    def full_values(self, record: JSON) -> tuple[Values, list[str]]:
        """A product's or model's values and categories, inherited ones included."""
        if not record.get("parent"):
            return record["values"], record["categories"]
        values, categories, _, _ = self.chain(record["parent"])
        own = [c for c in record["categories"] if c not in categories]
        return {**values, **record["values"]}, categories + own

    def values(self, values: Values, view: View) -> Values:
        if view.plain:  # only media values change: they gain a download link
            images = [code for code in self.images if code in values]
            if not images:
                return values
            values = dict(values)
            for code in images:
                values[code] = [self._download(e, view) for e in values[code]]
            return values
        out: Values = {}
        attrs, locales, scope = view.attributes, view.locales, view.scope
        for code, entries in values.items():
            if attrs is not None and code not in attrs:
                continue
            entries = [
                e
                for e in entries
                if (locales is None or e["locale"] is None or e["locale"] in locales)
                and (scope is None or e["scope"] is None or e["scope"] == scope)
            ]
            if not entries:
                continue
            if code in self.images:
                entries = [self._download(e, view) for e in entries]
            elif view.with_options and code in self.selects:
                entries = [self._linked(code, e) for e in entries]
            out[code] = entries
        return out

    def _download(self, entry: JSON, view: View) -> JSON:
        url = f"{view.base}{API}/media-files/{entry['data']}/download"
        return {**entry, "_links": {"download": {"href": url}}} if entry["data"] else entry

    def _linked(self, attribute: str, entry: JSON) -> JSON:
        options = self.catalog.structure.options.get(attribute, {})

        def one(code: str) -> JSON:
            labels = options[code]["labels"] if code in options else {}
            return {"attribute": attribute, "code": code, "labels": labels}

        data = entry["data"]
        linked = {c: one(c) for c in data} if isinstance(data, list) else one(data)
        return {**entry, "linked_data": linked}

    def product(self, index: int, view: View) -> JSON | None:
        record = self.catalog.product_record(index)
        if record is None:
            return None
        values, categories = self.full_values(record)
        # Records keep Akeneo's key order, so a C-level copy does most of the work.
        if view.legacy:
            identifier = self.catalog.identifier(index)
            item: JSON = {"identifier": identifier, **record}
            del item["uuid"]
            if view.links:
                url = f"{view.base}{API}/products/{identifier}"
                item = {"_links": {"self": {"href": url}}, **item}
            item["associations"] = self._by_identifier(record["associations"])
        elif view.links:
            url = f"{view.base}{API}/products-uuid/{record['uuid']}"
            item = {"_links": {"self": {"href": url}}, **record}
        else:
            item = record.copy()
        item["categories"] = categories
        item["values"] = self.values(values, view)
        item["created"] = view.iso(record["created"])
        item["updated"] = view.iso(record["updated"])
        return item

    def product_json(self, index: int, view: View) -> bytes | None:
        """`orjson.dumps(self.product(index, view))`, quicker for unmodified products."""
        catalog = self.catalog
        if index in catalog.dirty_products or not view.plain or index >= catalog.base_products:
            item = self.product(index, view)
            return None if item is None else orjson.dumps(item)
        g = catalog.generated(index)
        sku = f"SKU-{index:07d}"
        key, template = catalog.values.template(g.attrs, g.family, g.h)
        chunks = self._chunks.get(key)
        if chunks is None:  # per-item attributes (str) around serialized shared values (bytes)
            per_item = (*_PER_ITEM, *self._level_axes.get(g.attrs, ()))
            chunks = []
            for attr, value in template.items():  # consecutive shared values are pre-joined
                if attr in per_item:
                    chunks.append(attr)
                elif chunks and isinstance(chunks[-1], bytes):
                    chunks[-1] += b"," + _pair(attr, value)
                else:
                    chunks.append(_pair(attr, value))
            self._chunks[key] = chunks
        if g.parent:
            _, _, inherited, categories = self.chain(g.parent)
            parts, parent = ([inherited] if inherited else []), b'"%s"' % g.parent.encode()
        else:
            parts, categories, parent = [], orjson.dumps(g.categories), b"null"
        number = b"%d" % index
        for chunk in chunks:
            if chunk.__class__ is bytes:
                parts.append(chunk)
            elif chunk in g.axes:
                parts.append(self._axes[chunk][g.axes[chunk]])
            elif chunk == "sku":
                parts.append(b'"sku":[{"locale":null,"scope":null,"data":"SKU-%07d"}]' % index)
            elif chunk == "name":
                s0, s1, s2, s3 = self._names[g.family][g.h % 32]
                parts.append(b"%s%s%s%s%s%s%s" % (s0, number, s1, number, s2, number, s3))
            elif chunk == "ean":
                ean = catalog.values.ean_code(index).encode()
                parts.append(b'"ean":[{"locale":null,"scope":null,"data":"%s"}]' % ean)
            elif g.picture is not None:
                code = g.picture.encode()
                parts.append(
                    b'"picture":[{"locale":null,"scope":null,"data":"%s","_links":'
                    b'{"download":{"href":"%s%s/media-files/%s/download"}}}]'
                    % (code, view.base.encode(), API.encode(), code)
                )
        when = view.iso(base_updated(index)).encode()
        if view.legacy:
            head = b'"identifier":"%s"' % sku.encode()
            url = f"{view.base}{API}/products/{sku}"
        else:
            uuid = catalog.uuid(index)
            head = b'"uuid":"%s"' % uuid.encode()
            url = f"{view.base}{API}/products-uuid/{uuid}"
        links = b'"_links":{"self":{"href":"%s"}},' % url.encode() if view.links else b""
        return (
            b'{%s%s,"enabled":%s,"family":"%s","categories":%s,"groups":[],"parent":%s,'
            b'"values":{%s},"created":"%s","updated":"%s","associations":{},'
            b'"quantified_associations":{}}'
        ) % (
            links,
            head,
            b"true" if (g.h >> 50) % 20 else b"false",
            g.family.encode(),
            categories,
            parent,
            b",".join(parts),
            when,
            when,
        )

    def _by_identifier(self, associations: JSON) -> JSON:
        out = {}
        for name, links in associations.items():
            indices = (self.catalog.index_of_uuid(u) for u in links.get("products", []))
            ids = [self.catalog.identifier(i) for i in indices if i is not None]
            out[name] = {**links, "products": [i for i in ids if i is not None]}
        return out

    def model(self, code: str, view: View) -> JSON | None:
        record = self.catalog.model_record(code)
        if record is None:
            return None
        values, categories = self.full_values(record)
        item: JSON = {}
        if view.links:
            item["_links"] = {"self": {"href": f"{view.base}{API}/product-models/{code}"}}
        item.update(
            code=code,
            family=record["family"],
            family_variant=record["family_variant"],
            parent=record["parent"],
            categories=categories,
            values=self.values(values, view),
            created=view.iso(record["created"]),
            updated=view.iso(record["updated"]),
            associations=record["associations"],
            quantified_associations=record["quantified_associations"],
        )
        return item


def _name_segments(prefixes: tuple[str, ...]) -> list[list[bytes]]:
    """Split the serialized `name` value around the (three) product numbers."""
    entries = [
        {"locale": loc, "scope": None, "data": p + "\x00"}
        for loc, p in zip(("en_US", "fr_FR", "de_DE"), prefixes, strict=True)
    ]
    return [[s] for s in _pair("name", entries).split(b"\\u0000")]


def _pair(code: str, value: object) -> bytes:
    """`"code":<json>`, one member of a serialized `values` object."""
    return orjson.dumps(code) + b":" + orjson.dumps(value)


def structure_item(
    item: JSON, view: View, self_path: str | None, hidden: Iterable[str] = ()
) -> JSON:
    """A catalog-structure item with `updated` rendered and internal keys removed."""
    out: JSON = {"_links": {"self": {"href": f"{view.base}{API}/{self_path}"}}} if self_path else {}
    skip = set(hidden)
    for key, value in item.items():
        if key not in skip:
            out[key] = view.iso(value) if key == "updated" else value
    return out
