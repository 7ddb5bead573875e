"""The content hash that decides whether an item changed.

One function, one version number: bump `HASH_VERSION` whenever the canonical form changes, so
stored hashes of the old version are recognised as incomparable instead of silently "changed".

The canonical form of a PIM record: the volatile fields dropped (timestamps, server links,
read-only scores), the lists whose order means nothing sorted (value entries by locale and scope,
category and group codes), keys sorted at every depth, and text in Unicode NFC. This runs for
every record of every import, so it avoids walking the whole tree in Python: records are shaped
alike (volatile fields sit at the top and in value entries), orjson sorts the keys, and NFC is
applied to the serialized text only when it is not pure ASCII.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

import orjson

# 2: text is normalised to NFC before keys and unordered lists are sorted, not after (version 1
# sorted first, so the same record saved in NFD could sort, and hash, differently).
HASH_VERSION = 2

# Fields that change without the item changing: timestamps, server links (they embed the PIM's
# host), read-only scores, EE workflow metadata, and option labels Akeneo may inline.
VOLATILE_KEYS = frozenset(
    {"created", "updated", "_links", "metadata", "quality_scores", "completenesses", "linked_data"}
)

# Top-level lists whose order carries no meaning in the PIM.
UNORDERED_LISTS = frozenset({"categories", "groups", "attributes"})


def canonical(record: Any) -> Any:
    """`record` with volatile fields dropped and meaningless orders fixed (keys are left to
    `canonical_json`, which sorts them)."""
    if not isinstance(record, dict):
        return record
    result: dict[str, Any] = {}
    for key, value in record.items():
        if key in VOLATILE_KEYS:
            continue
        if key == "values" and isinstance(value, dict):
            value = {attribute: _entries(entries) for attribute, entries in value.items()}
        elif (
            key in UNORDERED_LISTS
            and isinstance(value, list)
            and all(isinstance(item, str) for item in value)
        ):
            value = sorted(value)
        result[key] = value
    return result


def _entries(entries: Any) -> Any:
    """Value entries: their volatile fields dropped, sorted by (locale, scope)."""
    if type(entries) is not list:
        return entries
    if len(entries) == 1:  # most values: nothing to sort, and usually nothing to drop
        entry = entries[0]
        if type(entry) is not dict or ("_links" not in entry and "linked_data" not in entry):
            return entries
    cleaned = [
        {k: v for k, v in entry.items() if k not in VOLATILE_KEYS}
        if isinstance(entry, dict) and ("_links" in entry or "linked_data" in entry)
        else entry
        for entry in entries
    ]
    if len(cleaned) > 1 and all(isinstance(entry, dict) for entry in cleaned):
        cleaned.sort(key=lambda e: (str(e.get("locale") or ""), str(e.get("scope") or "")))
    return cleaned


def canonical_json(record: Any) -> bytes:
    """The bytes that are hashed: canonical JSON with sorted keys, in NFC."""
    data = orjson.dumps(canonical(record), option=orjson.OPT_SORT_KEYS)
    if data.isascii():
        return data
    text = data.decode()
    if unicodedata.is_normalized("NFC", text):  # a quick check, much cheaper than normalize
        return data
    # JSON's own syntax is ASCII, so normalising the text normalises every string in it. The
    # order of keys and of sorted lists can change with it ("é" sorts after "f" composed, before
    # it decomposed), so the normalised record is put in canonical order again.
    normalised = orjson.loads(unicodedata.normalize("NFC", text))
    return orjson.dumps(canonical(normalised), option=orjson.OPT_SORT_KEYS)


def content_hash(record: Any) -> str:
    """sha256 of the canonical JSON of `record`, as hex."""
    return hashlib.sha256(canonical_json(record)).hexdigest()
