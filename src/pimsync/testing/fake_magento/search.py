"""``searchCriteria`` query parsing, filtering and paging, as Magento collections do it.

- Filters inside one filter group are ORed; groups are ANDed.
- String comparisons are case-insensitive (MySQL's default collation); ``like`` takes ``%``/``_``.
- ``total_count`` ignores paging, and a ``currentPage`` past the end returns the last page again
  (``Collection::getCurPage`` clamps), so a client must stop on ``total_count``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from .errors import ApiError

T = TypeVar("T")

_BRACKETS = re.compile(r"\[([^\]]*)\]")
_CAMEL = {
    "filterGroups": "filter_groups",
    "conditionType": "condition_type",
    "sortOrders": "sort_orders",
    "pageSize": "page_size",
    "currentPage": "current_page",
}
_CONDITIONS = frozenset(
    ("eq", "neq", "like", "nlike", "in", "nin", "finset", "nfinset", "gt", "gteq", "lt", "lteq",
     "moreq", "from", "to", "null", "notnull")
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Filter:
    field: str
    value: Any
    condition: str = "eq"


@dataclass(slots=True)
class Criteria:
    groups: list[list[Filter]] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    page_size: int | None = None
    current_page: int | None = None

    def echo(self) -> dict[str, Any]:
        """The ``search_criteria`` Magento echoes back (snake_case, only what was given)."""
        out: dict[str, Any] = {
            "filter_groups": [
                {
                    "filters": [
                        {"field": f.field, "value": f.value, "condition_type": f.condition}
                        for f in group
                    ]
                }
                for group in self.groups
            ]
        }
        if self.sort:
            out["sort_orders"] = [
                {"field": f, "direction": "DESC" if desc else "ASC"} for f, desc in self.sort
            ]
        if self.page_size is not None:
            out["page_size"] = self.page_size
        if self.current_page is not None:
            out["current_page"] = self.current_page
        return out

    def fields(self) -> set[str]:
        return {f.field for group in self.groups for f in group}


def _as_list(node: Any) -> list[Any]:
    if isinstance(node, list):
        return node
    if isinstance(node, dict):
        keys = sorted(node, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0))
        return [node[k] for k in keys]
    return []


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(
            400,
            'The "%1" value\'s type is invalid. The "%2" type was expected. Verify and try again.',
            [value, "int"],
        ) from None


def parse_criteria(query: httpx.QueryParams, prefix: str = "searchCriteria") -> Criteria:
    """Build `Criteria` from ``searchCriteria[filter_groups][0][filters][0][field]=...`` params."""
    tree: dict[str, Any] = {}
    for key, value in query.multi_items():
        if not key.startswith(prefix):
            continue
        parts = [_CAMEL.get(p, p) for p in _BRACKETS.findall(key[len(prefix) :])]
        if not parts:
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value
    criteria = Criteria()
    for group in _as_list(tree.get("filter_groups")):
        filters = []
        for raw in _as_list(group.get("filters") if isinstance(group, dict) else None):
            if not isinstance(raw, dict) or "field" not in raw:
                continue
            cond = str(raw.get("condition_type") or "eq").lower()
            if cond not in _CONDITIONS:
                # Not a Magento message: real collections build broken SQL here. Fail loudly.
                raise ApiError(400, 'Invalid condition type "%1".', [cond])
            filters.append(Filter(str(raw["field"]), raw.get("value"), cond))
        if filters:
            criteria.groups.append(filters)
    for raw in _as_list(tree.get("sort_orders")):
        if isinstance(raw, dict) and raw.get("field"):
            criteria.sort.append((raw["field"], str(raw.get("direction", "ASC")).upper() == "DESC"))
    if "page_size" in tree:
        criteria.page_size = _int(tree["page_size"])
    if "current_page" in tree:
        criteria.current_page = _int(tree["current_page"])
    return criteria


# --- matching ------------------------------------------------------------------------------

_LIKE_CACHE: dict[str, re.Pattern[str]] = {}


def _like(pattern: str) -> re.Pattern[str]:
    compiled = _LIKE_CACHE.get(pattern)
    if compiled is None:
        body = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
        compiled = re.compile(body, re.IGNORECASE | re.DOTALL)
        _LIKE_CACHE[pattern] = compiled
    return compiled


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _eq(a: Any, b: Any) -> bool:
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return na == nb
    return str(a).lower() == str(b).lower()


def _cmp(a: Any, b: Any) -> int:
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return (na > nb) - (na < nb)
    sa, sb = str(a).lower(), str(b).lower()
    return (sa > sb) - (sa < sb)


def _split(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [v.strip() for v in str(value).split(",")] if value is not None else []


def matches(actual: Any, flt: Filter) -> bool:
    """Does one field value satisfy one filter? A list value matches if any element does."""
    cond, wanted = flt.condition, flt.value
    if cond == "null":
        return actual is None or actual == []
    if cond == "notnull":
        return not (actual is None or actual == [])
    if cond in ("neq", "nlike", "nin", "nfinset"):
        positive = Filter(flt.field, wanted, cond[1:] if cond != "neq" else "eq")
        return actual is not None and not matches(actual, positive)
    if isinstance(actual, list):
        return any(matches(item, flt) for item in actual)
    if actual is None:
        return False
    if cond == "eq":
        return _eq(actual, wanted)
    if cond == "like":
        return _like(str(wanted)).fullmatch(str(actual)) is not None
    if cond == "in":
        return any(_eq(actual, w) for w in _split(wanted))
    if cond == "finset":
        return any(_eq(part, wanted) for part in _split(actual))
    order = _cmp(actual, wanted)
    return {
        "gt": order > 0,
        "gteq": order >= 0,
        "moreq": order >= 0,
        "from": order >= 0,
        "lt": order < 0,
        "lteq": order <= 0,
        "to": order <= 0,
    }[cond]


def _sort_key(value: Any) -> tuple[int, float, str]:
    num = _num(value)
    if value is None:
        return (0, 0.0, "")
    return (1, num, "") if num is not None else (2, 0.0, str(value).lower())


def search(
    items: Iterable[T],
    criteria: Criteria,
    getter: Callable[[T, str], Any],
    serialize: Callable[[T], dict[str, Any]],
) -> dict[str, Any]:
    """Filter, sort and page `items`; answer ``{items, search_criteria, total_count}``."""
    found = [
        item
        for item in items
        if all(any(matches(getter(item, f.field), f) for f in group) for group in criteria.groups)
    ]
    for fld, desc in reversed(criteria.sort):  # stable sorts, last key first
        keys = {id(item): _sort_key(getter(item, fld)) for item in found}
        found.sort(key=lambda item: keys[id(item)], reverse=desc)
    total = len(found)
    if criteria.page_size:
        size = criteria.page_size
        last = max(1, -(-total // size))
        page = min(max(criteria.current_page or 1, 1), last)
        found = found[(page - 1) * size : page * size]
    return {
        "items": [serialize(item) for item in found],
        "search_criteria": criteria.echo(),
        "total_count": total,
    }


def sku_candidates(criteria: Criteria) -> list[str] | None:
    """SKUs a search is restricted to, if one filter group is a lone ``sku`` eq/in filter.

    Lets the fake answer "which of these 100 SKUs exist?" without scanning 10k products.
    """
    for group in criteria.groups:
        if len(group) == 1 and group[0].field == "sku" and group[0].condition in ("eq", "in"):
            flt = group[0]
            return [str(v) for v in _split(flt.value)] if flt.condition == "in" else [flt.value]
    return None
