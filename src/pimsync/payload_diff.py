"""Field-by-field comparison of Magento payloads, for `pimsync show`.

Two comparisons: what pimsync would push now against what it last pushed (both its own
payloads, compared exactly), and what Magento holds against what pimsync would push (Magento
answers in its own types: custom attribute values as strings, decimals with six places, ids as
strings, so scalars are compared by meaning, and only on the fields pimsync sends).

A payload is split into parts: `all` (the global values), `store:<code>` (one store view's
values) and `extra` (what is not sent as-is: media, axes, the configurable parent). Within a
part, nested objects become dotted fields and `custom_attributes` are keyed by attribute code
(`custom_attributes.pim_color`), as Magento identifies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field that differs between the last pushed payload and the one pushed now."""

    part: str
    field: str
    change: str  # added, removed or changed
    old: Any = None
    new: Any = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Drift:
    """One field whose value in Magento is not the value pimsync would push."""

    part: str
    field: str
    magento: Any
    pimsync: Any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def flatten(body: Mapping[str, Any]) -> dict[str, Any]:
    """A payload part as {dotted field: value}."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key == "custom_attributes" and _attribute_list(value):
            for attribute in value:
                out[f"custom_attributes.{attribute['attribute_code']}"] = attribute.get("value")
        elif isinstance(value, Mapping):
            for sub, inner in flatten(value).items():
                out[f"{key}.{sub}"] = inner
        else:
            out[key] = value
    return out


def _attribute_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, Mapping) and "attribute_code" in item for item in value
    )


def payload_parts(payload: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A payload (`Payloads.as_dict()` shape) split into its parts, in a stable order."""
    if not payload:
        return {}
    parts: dict[str, dict[str, Any]] = {"all": dict(payload.get("all") or {})}
    for store, body in sorted((payload.get("stores") or {}).items()):
        parts[f"store:{store}"] = dict(body)
    extra = {key: value for key, value in payload.items() if key not in ("all", "stores")}
    if extra:
        parts["extra"] = extra
    return parts


def diff_payloads(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> list[FieldChange]:
    """What changed from `old` (last pushed) to `new` (would be pushed now), part by part."""
    old_parts, new_parts = payload_parts(old), payload_parts(new)
    order = list(new_parts) + [part for part in old_parts if part not in new_parts]
    changes: list[FieldChange] = []
    for part in order:
        before = flatten(old_parts.get(part, {}))
        after = flatten(new_parts.get(part, {}))
        for field in sorted(set(before) | set(after)):
            if field not in before:
                changes.append(FieldChange(part, field, "added", None, after[field]))
            elif field not in after:
                changes.append(FieldChange(part, field, "removed", before[field], None))
            elif before[field] != after[field]:
                changes.append(FieldChange(part, field, "changed", before[field], after[field]))
    return changes


def drift(part: str, expected: Mapping[str, Any], held: Mapping[str, Any]) -> list[Drift]:
    """The fields of `expected` (what pimsync would push) that Magento (`held`) holds otherwise.

    Fields pimsync does not send are not looked at: Magento has many more.
    """
    have = flatten(held)
    return [
        Drift(part, field, have.get(field), value)
        for field, value in flatten(expected).items()
        if not same(value, have.get(field))
    ]


def same(ours: Any, theirs: Any) -> bool:
    """Whether Magento's value means what pimsync sent: objects on pimsync's keys only, lists
    in any order, scalars by meaning ("12.000000" is 12.0, "1" is true)."""
    if isinstance(ours, Mapping):
        return isinstance(theirs, Mapping) and all(
            same(value, theirs.get(key)) for key, value in ours.items()
        )
    if isinstance(ours, list):
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            return False
        remaining = list(theirs)
        for item in ours:
            found = next((i for i, other in enumerate(remaining) if same(item, other)), None)
            if found is None:
                return False
            remaining.pop(found)
        return True
    return _same_scalar(ours, theirs)


def _same_scalar(ours: Any, theirs: Any) -> bool:
    if ours is None or theirs is None:
        return ours is None and theirs is None
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return _flag(ours) == _flag(theirs)
    if ours == theirs:
        return True
    both_text = isinstance(ours, str) and isinstance(theirs, str)
    mine, other = _number(ours), _number(theirs)
    # Two strings are numbers only if one has a decimal point: "0042" and "42" are different
    # codes, while "12.000000" is how Magento prints the decimal 12.
    if mine is not None and other is not None and (not both_text or "." in f"{ours}{theirs}"):
        return mine == other
    return str(ours) == str(theirs)


def _flag(value: Any) -> str | None:
    text = str(value).strip().lower()
    if text in ("1", "true"):
        return "1"
    if text in ("0", "false", ""):
        return "0"
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
