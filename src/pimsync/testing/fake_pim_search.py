"""Search filters and pagination for the mock PIM (`fake_pim.FakePim`).

Products and product models are scanned in "primary key" order (product index, model listing
position). Unmodified items have a non-decreasing base `updated`, so an `updated`/`created` range
becomes a pk range found by bisection; the few modified ("dirty") items are merged in and checked
one by one. Only the other filters (`enabled`, `family`, `parent`...) look at items individually.
"""

from __future__ import annotations

import base64
import bisect
import heapq
import itertools
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from pimsync.testing.catalog import Catalog, Meta, base_updated
from pimsync.testing.fake_pim_structure import JSON

MAX_LIMIT = 100
MAX_OFFSET_WINDOW = 10_000  # Elasticsearch's max_result_window: page * limit beyond it is refused
_PRODUCT_DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_CURSOR_MUL, _CURSOR_ADD, _M64 = 0x9E3779B97F4A7C15, 0x5DEECE66D2F1A3B7, (1 << 64) - 1


class ApiError(Exception):
    """An Akeneo error answer: `{"code": status, "message": message, **extra}`."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra

    def body(self) -> JSON:
        return {"code": self.status, "message": self.message, **self.extra}


def unsupported(prop: str, operator: Any) -> ApiError:
    return ApiError(
        422,
        f'Filter on property "{prop}" is not supported or does not support operator "{operator}"',
    )


# -- request parameters --------------------------------------------------------------------


def pagination(params: dict[str, str], *, search_after: bool) -> tuple[str, int, int]:
    """Validate `pagination_type`, `limit`, `page`, `with_count` like Akeneo's validator."""
    kind = params.get("pagination_type", "page")
    if kind not in ("page", "search_after"):
        raise ApiError(422, "Pagination type does not exist.")
    if kind == "search_after" and not search_after:
        raise ApiError(422, "Pagination type is not supported.")
    limit, page = params.get("limit", "10"), params.get("page", "1")
    if not limit.isdigit() or int(limit) < 1:
        raise ApiError(422, f'"{limit}" is not a valid limit number.')
    if int(limit) > MAX_LIMIT:
        raise ApiError(422, f"You cannot request more than {MAX_LIMIT} items.")
    if kind == "page":
        if not page.isdigit() or int(page) < 1:
            raise ApiError(422, f'"{page}" is not a valid page number.')
        if params.get("with_count", "false") not in ("true", "false"):
            raise ApiError(
                422,
                'Parameter "with_count" has to be a boolean. Only "true" or "false" '
                f'allowed, "{params["with_count"]}" given.',
            )
    return kind, int(limit), int(page)


def encode_cursor(pk: int) -> str:
    """Opaque `search_after` value: the last pk, scrambled, in urlsafe base64."""
    raw = struct.pack(">Q", (pk * _CURSOR_MUL + _CURSOR_ADD) & _M64)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(value: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        (scrambled,) = struct.unpack(">Q", raw)
    except (ValueError, struct.error):
        raise ApiError(422, f'Parameter "search_after" is not valid, "{value}" given.') from None
    pk: int = ((scrambled - _CURSOR_ADD) * pow(_CURSOR_MUL, -1, 1 << 64)) & _M64
    if pk >= 1 << 40:
        raise ApiError(422, f'Parameter "search_after" is not valid, "{value}" given.')
    return pk


def href(base: str, path: str, params: Iterable[tuple[str, str]]) -> JSON:
    query = urlencode(list(params), quote_via=quote)
    return {"href": f"{base}{path}?{query}" if query else f"{base}{path}"}


def envelope(
    base: str,
    path: str,
    params: list[tuple[str, str]],
    items: list[Any],
    *,
    kind: str,
    limit: int,
    page: int = 1,
    cursor: str | None = None,
    next_cursor: str | None = None,
    count: int | None = None,
) -> JSON:
    """The HAL list answer; like Akeneo, `next` is present whenever the page is full."""
    kept = [(k, v) for k, v in params if k not in ("page", "limit", "search_after")]

    def at(page: int | None = None, cursor: str | None = None) -> JSON:
        if page is not None:
            return href(base, path, [*kept, ("page", str(page)), ("limit", str(limit))])
        after = [("search_after", cursor)] if cursor else []
        return href(base, path, [*kept, ("limit", str(limit)), *after])

    links: JSON
    if kind == "page":
        links = {"self": at(page), "first": at(1)}
        if page > 1:
            links["previous"] = at(page - 1)
        if len(items) == limit:
            links["next"] = at(page + 1)
    else:
        links = {"self": at(cursor=cursor), "first": at()}
        if next_cursor is not None:
            links["next"] = at(cursor=next_cursor)
    body: JSON = {"_links": links}
    if kind == "page":
        body["current_page"] = page
    if count is not None:
        body["items_count"] = count
    body["_embedded"] = {"items": items}
    return body


# -- search filters -------------------------------------------------------------------------


def parse_json_search(raw: str | None) -> dict[str, list[JSON]]:
    """Decode and structurally validate the `search` parameter (messages as Akeneo's)."""
    if raw is None:
        return {}
    try:
        search = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "Search query parameter should be valid JSON.") from None
    if not isinstance(search, dict):
        kind = {list: "array", str: "string", int: "integer", float: "double", bool: "boolean"}
        given = kind.get(type(search), "NULL")
        raise ApiError(422, f'Search query parameter has to be an array, "{given}" given.')
    for prop, rules in search.items():
        if not isinstance(rules, list) or not rules or not all(isinstance(r, dict) for r in rules):
            raise ApiError(
                422,
                f'Structure of filter "{prop}" should respect this structure: '
                f'{{"{prop}":[{{"operator": "my_operator", "value": "my_value"}}]}}',
            )
        for rule in rules:
            if "operator" not in rule:
                raise ApiError(422, f'Operator is missing for the property "{prop}".')
            if not isinstance(rule["operator"], str):
                raise ApiError(422, "Operator has to be a string.")
    return search


@dataclass
class Search:
    """A parsed product or product-model search.

    `lo`/`hi` bound (inclusive) both `created` and the effective `updated` of every match, so
    they also bound the pk range of unmodified items; the other fields are checked per item.
    """

    lo: int | None = None
    hi: int | None = None
    dates: list[tuple[bool, int, int, bool]] = field(default_factory=list)  # updated?, a, b, in?
    enabled: bool | None = None
    families: list[tuple[frozenset[str] | None, bool]] = field(default_factory=list)
    parents: list[tuple[frozenset[str] | None, bool, bool]] = field(default_factory=list)
    pks: list[tuple[frozenset[int], bool]] = field(default_factory=list)
    explicit: set[int] | None = None  # restrict candidates to these pks (parent, uuid filters)
    extra: list[Callable[[int, Meta], bool]] = field(default_factory=list)

    @property
    def trivial(self) -> bool:
        return not (self.dates or self.families or self.parents or self.pks or self.extra) and (
            self.enabled is None
        )

    def restrict(self, pks: Iterable[int]) -> None:
        pks = set(pks)
        self.explicit = pks if self.explicit is None else self.explicit & pks

    def matches(self, pk: int, m: Meta, catalog: Catalog) -> bool:
        for updated, a, b, inside in self.dates:
            if (a <= (m.updated if updated else m.created) <= b) is not inside:
                return False
        if self.enabled is not None and m.enabled is not self.enabled:
            return False
        for codes, keep in self.families:
            if (m.family is not None if codes is None else m.family in codes) is not keep:
                return False
        for parents, direct, keep in self.parents:
            if parents is None:
                found = m.parent is not None
            else:
                found = m.parent in parents
                if not found and not direct and m.parent:
                    model = catalog.model_record(m.parent)
                    found = model is not None and model["parent"] in parents
            if found is not keep:
                return False
        return all((pk in pks) is keep for pks, keep in self.pks) and all(
            check(pk, m) for check in self.extra
        )


_FOREVER = 1 << 62


def _date_rule(prop: str, rule: JSON, tz: tzinfo, now: int) -> tuple[int, int, bool]:
    """(a, b, inside) for a `created`/`updated` rule in the `YYYY-MM-DD hh:mm:ss` format."""
    op, value = rule["operator"], rule.get("value")

    def ts(v: Any) -> int:
        if not isinstance(v, str) or not _PRODUCT_DATE.fullmatch(v):
            raise ApiError(
                422,
                f'Property "{prop}" expects a string with the format "yyyy-mm-dd H:i:s" as '
                f'data, "{v}" given.',
            )
        try:
            return int(datetime.strptime(v, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz).timestamp())
        except ValueError:
            raise ApiError(422, f'Property "{prop}" expects a valid date, "{v}" given.') from None

    def pair(v: Any) -> tuple[int, int]:
        if not isinstance(v, list) or len(v) != 2:
            raise ApiError(422, f'Property "{prop}" expects an array with valid data, "{v}" given.')
        return ts(v[0]), ts(v[1])

    if op == ">":
        return ts(value) + 1, _FOREVER, True
    if op == "<":
        return -_FOREVER, ts(value) - 1, True
    if op in ("=", "!="):
        return ts(value), ts(value), op == "="
    if op in ("BETWEEN", "NOT BETWEEN"):
        return *pair(value), op == "BETWEEN"
    if op == "SINCE LAST N DAYS":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ApiError(422, f'Property "{prop}" expects a numeric as data, "{value}" given.')
        return now - 86400 * value, _FOREVER, True
    raise unsupported(prop, op)


def parse_search(
    raw: str | None, catalog: Catalog, tz: tzinfo, now: int, *, models: bool = False
) -> Search:
    """Parse a product (or product-model) `search` into a `Search`."""
    search = Search()
    for prop, rules in parse_json_search(raw).items():
        for rule in rules:
            op, value = rule["operator"], rule.get("value")
            if prop in ("created", "updated"):
                a, b, inside = _date_rule(prop, rule, tz, now)
                search.dates.append((prop == "updated", a, b, inside))
                if inside:
                    search.lo = a if search.lo is None else max(search.lo, a)
                    search.hi = b if search.hi is None else min(search.hi, b)
            elif prop == "enabled" and not models and op in ("=", "!="):
                if not isinstance(value, bool):
                    raise ApiError(
                        422, f'Property "enabled" expects a boolean as data, "{value}" given.'
                    )
                search.enabled = value if op == "=" else not value
            elif prop == "family" and op in ("IN", "NOT IN"):
                search.families.append((frozenset(_codes(prop, value)), op == "IN"))
            elif prop == "family" and op in ("EMPTY", "NOT EMPTY"):
                search.families.append((None, op == "NOT EMPTY"))
            elif prop == "parent":
                _parent_rule(search, catalog, op, value, models=models)
            elif prop == "uuid" and not models and op in ("IN", "NOT IN"):
                found = (catalog.index_of_uuid(u) for u in _codes(prop, value))
                pks = frozenset(i for i in found if i is not None)
                if op == "IN":
                    search.restrict(pks)
                search.pks.append((pks, op == "IN"))
            else:
                raise unsupported(prop, op)
    return search


def _codes(prop: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(422, f'Property "{prop}" expects an array as data, "{value}" given.')
    return value


def _parent_rule(search: Search, catalog: Catalog, op: str, value: Any, *, models: bool) -> None:
    """`parent` filters: EMPTY/NOT EMPTY; products `=` (any descendant) and `IN` (direct);
    product models `IN` (sub models of these roots)."""
    if op in ("EMPTY", "NOT EMPTY"):
        search.parents.append((None, True, op == "NOT EMPTY"))
    elif models and op == "IN":
        codes = frozenset(_codes("parent", value))
        subs = (catalog.model_pk(s) for c in codes for s in catalog.sub_models(c))
        search.restrict(pk for pk in subs if pk is not None)
        search.parents.append((codes, True, True))
    elif not models and op in ("=", "IN"):
        if op == "=" and not isinstance(value, str):
            raise ApiError(422, f'Property "parent" expects a string as data, "{value}" given.')
        codes = frozenset(_codes("parent", value) if op == "IN" else [value])
        direct = op == "IN"
        search.restrict(i for c in codes for i in catalog.generated_variants(c, direct=direct))
        search.parents.append((codes, direct, True))
    else:
        raise unsupported("parent", op)


# -- scanning -------------------------------------------------------------------------------


class Space:
    """A pk-ordered collection to scan: products by index, or models by listing position."""

    def __init__(self, catalog: Catalog, *, models: bool) -> None:
        self.catalog, self.models = catalog, models

    @property
    def base(self) -> int:
        return self.catalog.base_model_pks if self.models else self.catalog.base_products

    def base_ts(self, pk: int) -> int:
        return self.catalog.model_base_updated(pk) if self.models else base_updated(pk)

    def dirty(self) -> tuple[set[int], list[int]]:
        if not self.models:
            return self.catalog.dirty_products, self.catalog.dirty_product_list()
        pks = {
            self.catalog.model_pk(c) for c in self.catalog.dirty_models | set(self.catalog.models)
        }
        clean = {pk for pk in pks if pk is not None}
        return clean, sorted(clean)

    def meta(self, pk: int) -> Meta | None:
        if not self.models:
            return self.catalog.product_meta(pk)
        code = self.catalog.model_at(pk)
        record = self.catalog.model_record(code) if code is not None else None
        if record is None or code is None:
            return None
        updated = self.catalog.model_updated(code)
        return Meta(record["family"], record["parent"], True, record["created"], updated)


def scan(space: Space, search: Search, after: int = -1) -> Iterator[int]:
    """Matching pks greater than `after`, in ascending order."""
    dirty_set, dirty_list = space.dirty()
    dirty = dirty_list[bisect.bisect_right(dirty_list, after) :]
    candidates: Iterable[int]
    if search.explicit is not None:
        candidates = sorted({pk for pk in search.explicit if pk > after} | set(dirty))
    else:
        base = space.base
        lo = (
            0
            if search.lo is None
            else bisect.bisect_left(range(base), search.lo, key=space.base_ts)
        )
        hi = (
            base
            if search.hi is None
            else bisect.bisect_right(range(base), search.hi, key=space.base_ts)
        )
        clean = (pk for pk in range(max(lo, after + 1), hi) if pk not in dirty_set)
        candidates = heapq.merge(clean, dirty)
    if search.trivial and not space.models:
        # Fast paths for the full scan: clean products always exist, dirty ones may be deleted.
        if not dirty and search.explicit is None:
            yield from range(after + 1, space.base)
            return
        for pk in candidates:
            if pk not in dirty_set or space.catalog.product_record(pk) is not None:
                yield pk
        return
    catalog = space.catalog
    for pk in candidates:
        meta = space.meta(pk)
        if meta is not None and search.matches(pk, meta, catalog):
            yield pk


def page_of(
    space: Space, search: Search, kind: str, limit: int, page: int, after: int
) -> list[int]:
    """The pks of one page: by offset (`page`) or after a cursor (`search_after`)."""
    if kind == "page":
        if (page - 1) * limit + limit > MAX_OFFSET_WINDOW:
            raise ApiError(
                422,
                'You have reached the maximum number of pages you can retrieve with the "page" '
                "pagination type. Please use the search after pagination type instead",
                _links={
                    "documentation": {
                        "href": "http://api.akeneo.com/documentation/"
                        "pagination.html#the-search-after-method"
                    }
                },
            )
        return list(itertools.islice(scan(space, search), (page - 1) * limit, page * limit))
    return list(itertools.islice(scan(space, search, after), limit))
