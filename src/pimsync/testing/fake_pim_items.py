"""The mock PIM's product and product-model endpoints (registered on import).

Lists support both pagination types; unmodified products in unfiltered lists take the renderer's
pre-serialized fast path. Every product returned is counted in `FakePim` statistics.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from pimsync.testing.catalog import Meta
from pimsync.testing.fake_pim_render import API, View
from pimsync.testing.fake_pim_routes import Call, respond, route, saved
from pimsync.testing.fake_pim_search import (
    ApiError,
    Space,
    decode_cursor,
    encode_cursor,
    envelope,
    page_of,
    pagination,
    parse_search,
    scan,
)


def _plural(items: list[str], one: str, many: str) -> str:
    return f'{many if len(items) > 1 else one} "{", ".join(items)}"'


def view_of(c: Call, *, legacy: bool = False, links: bool = False) -> View:
    """Parse and check `attributes`, `locales`, `scope` and `with_attribute_options`."""
    structure = c.pim.catalog.structure
    attributes = locales = None
    if "attributes" in c.params:
        attributes = frozenset(c.params["attributes"].split(","))
        unknown = sorted(attributes - structure.attributes.keys())
        if unknown:
            verb = "do not exist." if len(unknown) > 1 else "does not exist."
            raise ApiError(422, f"{_plural(unknown, 'Attribute', 'Attributes')} {verb}")
    if "locales" in c.params:
        locales = frozenset(c.params["locales"].split(","))
        bad = sorted(x for x in locales if not structure.locales.get(x, {}).get("enabled"))
        if bad:
            verb = "do not exist or are" if len(bad) > 1 else "does not exist or is"
            raise ApiError(422, f"{_plural(bad, 'Locale', 'Locales')} {verb} not activated.")
    scope = c.params.get("scope")
    if scope is not None and scope not in structure.channels:
        raise ApiError(422, f'Scope "{scope}" does not exist.')
    with_options = c.params.get("with_attribute_options") == "true"
    return c.pim.view(
        attributes=attributes,
        locales=locales,
        scope=scope,
        legacy=legacy,
        links=links,
        with_options=with_options,
    )


def _list(c: Call, *, models: bool, legacy: bool = False) -> httpx.Response:
    pim = c.pim
    kind, limit, page = pagination(c.params, search_after=True)
    view = view_of(c, legacy=legacy, links=True)
    search = parse_search(c.params.get("search"), pim.catalog, pim.tz, pim.now(), models=models)
    space = Space(pim.catalog, models=models)
    if view.scope is not None and not models:
        # `scope` also drops products outside the channel's tree: here, the unclassified ones.
        def classified(pk: int, meta: Meta) -> bool:
            record = pim.catalog.product_record(pk)
            clean = pk not in pim.catalog.dirty_products
            return clean or bool(record and pim.renderer.full_values(record)[1])

        search.extra.append(classified)
    cursor = c.params.get("search_after") if kind == "search_after" else None
    pks = page_of(space, search, kind, limit, page, decode_cursor(cursor) if cursor else -1)
    items: list[Any]
    if models:
        codes = [code for pk in pks if (code := pim.catalog.model_at(pk)) is not None]
        items = [x for code in codes if (x := pim.renderer.model(code, view)) is not None]
        pim.served_models.update(codes)
        pim.items_served["product_models"] += len(items)
    else:
        rendered = (pim.renderer.product_json(pk, view) for pk in pks)
        items = [orjson.Fragment(x) for x in rendered if x is not None]
        pim.mark_served(pks)
    count = None
    if kind == "page" and c.params.get("with_count") == "true":
        count = sum(1 for _ in scan(space, search))
    next_cursor = encode_cursor(pks[-1]) if kind == "search_after" and len(pks) == limit else None
    return respond(
        200,
        envelope(
            c.base,
            c.path,
            c.pairs,
            items,
            kind=kind,
            limit=limit,
            page=page,
            cursor=cursor,
            next_cursor=next_cursor,
            count=count,
        ),
    )


@route(f"{API}/products-uuid", "GET")
def products_uuid(c: Call) -> httpx.Response:
    return _list(c, models=False)


@route(f"{API}/products", "GET")
def products(c: Call) -> httpx.Response:
    """The legacy, identifier-keyed endpoint."""
    return _list(c, models=False, legacy=True)


@route(f"{API}/product-models", "GET")
def product_models(c: Call) -> httpx.Response:
    return _list(c, models=True)


def _index(c: Call, legacy: bool) -> int | None:
    catalog = c.pim.catalog
    return (catalog.index_of_identifier if legacy else catalog.index_of_uuid)(c.args["code"])


def _not_found(code: str) -> ApiError:
    return ApiError(
        404, f'Product "{code}" does not exist or you do not have permission to access it.'
    )


def _get(c: Call, legacy: bool) -> httpx.Response:
    index = _index(c, legacy)
    item = c.pim.renderer.product(index, view_of(c, legacy=legacy)) if index is not None else None
    if item is None or index is None:
        raise _not_found(c.args["code"])
    c.pim.mark_served([index])
    return respond(200, item)


def _patch(c: Call, legacy: bool) -> httpx.Response:
    code = c.args["code"]
    index, created = c.pim.writer.write_product(
        _index(c, legacy),
        c.body,
        c.pim.now(),
        legacy=legacy,
        uuid=None if legacy else code.lower(),
        identifier=code if legacy else None,
    )
    if legacy:
        return saved(c, created, f"products/{c.pim.catalog.identifier(index)}")
    return saved(c, created, f"products-uuid/{c.pim.catalog.uuid_of(index)}")


def _delete(c: Call, legacy: bool) -> httpx.Response:
    if not c.pim.writer.delete_product(_index(c, legacy)):
        raise _not_found(c.args["code"])
    return respond(204)


def _register(template: str, legacy: bool) -> None:
    route(template, "GET")(lambda c: _get(c, legacy))
    route(template, "PATCH")(lambda c: _patch(c, legacy))
    route(template, "DELETE")(lambda c: _delete(c, legacy))


_register(f"{API}/products-uuid/{{code}}", legacy=False)
_register(f"{API}/products/{{code}}", legacy=True)


@route(f"{API}/products-uuid", "POST")
def post_product(c: Call) -> httpx.Response:
    index, _ = c.pim.writer.write_product(None, c.body, c.pim.now())
    return saved(c, True, f"products-uuid/{c.pim.catalog.uuid_of(index)}")


@route(f"{API}/product-models/{{code}}", "GET")
def product_model(c: Call) -> httpx.Response:
    code = c.args["code"]
    item = c.pim.renderer.model(code, view_of(c))
    if item is None:
        raise ApiError(
            404,
            f'Product model "{code}" does not exist or you do not have permission to access it.',
        )
    c.pim.served_models.add(code)
    c.pim.items_served["product_models"] += 1
    return respond(200, item)


@route(f"{API}/product-models/{{code}}", "PATCH")
def patch_product_model(c: Call) -> httpx.Response:
    created = c.pim.writer.write_model(c.args["code"], c.body, c.pim.now())
    return saved(c, created, f"product-models/{c.args['code']}")
