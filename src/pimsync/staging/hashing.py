"""The content hash that decides whether an item changed.

One function, one version number: bump `HASH_VERSION` whenever `canonical` changes, so stored
hashes of the old version are recognised as incomparable instead of silently "changed".
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

import orjson

HASH_VERSION = 1

# Keys that change without the item changing: timestamps, server links (they embed the PIM's
# host), read-only scores and EE workflow metadata. They are dropped at every depth.
VOLATILE_KEYS = frozenset(
    {"created", "updated", "_links", "metadata", "quality_scores", "completenesses", "linked_data"}
)

# Lists whose order carries no meaning in the PIM; sorted so a reordering is not a change.
UNORDERED_LISTS = frozenset({"categories", "groups", "attributes"})


def canonical(value: Any, key: str | None = None) -> Any:
    """Return `value` in canonical form: volatile keys dropped, strings NFC, unordered lists sorted.

    Value entries (`{"locale", "scope", "data"}` lists under `values`) are sorted by locale and
    scope, since Akeneo gives no order for them.
    """
    if isinstance(value, str):
        return value if value.isascii() else unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        if key == "values":
            return {attribute: _canonical_entries(entries) for attribute, entries in value.items()}
        return {k: canonical(v, k) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        items = [canonical(item) for item in value]
        if key in UNORDERED_LISTS and all(isinstance(item, str) for item in items):
            items.sort()
        return items
    return value


def _canonical_entries(entries: Any) -> Any:
    if not isinstance(entries, list):
        return canonical(entries)
    items = [canonical(entry) for entry in entries]
    if len(items) > 1 and all(isinstance(item, dict) for item in items):
        items.sort(key=lambda e: (str(e.get("locale") or ""), str(e.get("scope") or "")))
    return items


def canonical_json(record: Any) -> bytes:
    """The bytes that are hashed: canonical JSON with sorted keys."""
    return orjson.dumps(canonical(record), option=orjson.OPT_SORT_KEYS)


def content_hash(record: Any) -> str:
    """sha256 of the canonical JSON of `record`, as hex."""
    return hashlib.sha256(canonical_json(record)).hexdigest()
