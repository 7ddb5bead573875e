"""PIM records as a listing delivers them: validated one by one, so a malformed record is
rejected alone (and quarantined) while the rest of its page is staged.

A `Page` is validated by whoever reads it first, not by the thread that fetched it: the
importer's reader thread only fetches a page and reads where the next one is, so it can ask for
it at once, and the records are parsed and validated beside the staging (often in another
process, pipeline/preparers.py) instead of in front of the next request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import orjson
from pydantic import ValidationError

from pimsync.errors import PimError
from pimsync.pim.models import PimRecord, describe_validation_error
from pimsync.pim.pagination import embedded_items


@dataclass(frozen=True, slots=True)
class Parsed:
    """A record that passed validation, with its raw JSON (what is staged and hashed)."""

    record: PimRecord
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that failed validation: quarantined under `code` with `reason`."""

    code: str
    raw: Any
    reason: str


Item = Parsed | Rejected


class Page(Sequence[Item]):
    """One page of a listing: its raw records, validated as `model` on first access.

    `suspect` pages (read by the lenient parser, or larger than a record may be) are screened
    record by record for text that cannot be stored and for oversized records first. `content`
    is the answer the records were parsed from, when they can be parsed again from it as they
    are (so another process can prepare the page from those bytes alone). A page made with
    `raws=None` has not been parsed yet: its records are read from `content` when first needed
    (`listing_items`), so a page prepared elsewhere is parsed only there. `source` names the
    endpoint it came from, for the error about a page whose records cannot be read.
    """

    __slots__ = ("_items", "_raws", "_suspect", "content", "model", "source")

    def __init__(
        self,
        model: type[PimRecord],
        raws: list[Any] | None,
        *,
        suspect: bool = False,
        content: bytes | None = None,
        source: str | None = None,
    ) -> None:
        if raws is None and content is None:
            raise ValueError("a page needs its records or the answer that holds them")
        self.model = model
        self._raws = raws
        self._suspect = suspect
        self.content = content
        self.source = source
        self._items: list[Item] | None = None

    def _records(self) -> list[Any]:
        if self._raws is None:
            assert self.content is not None
            self._raws, lenient = listing_items(self.content, self.source or self.model.entity)
            self._suspect = self._suspect or lenient
        return self._raws

    def _validated(self) -> list[Item]:
        if self._items is None:
            model, raws = self.model, self._records()
            suspect = self._suspect
            self._items = [
                (_screen(model, raw) if suspect else None) or _parse(model, raw) for raw in raws
            ]
            self._raws = []
            self.content = None  # validated here: nobody needs the bytes any more
        return self._items

    def __len__(self) -> int:
        return len(self._records()) if self._items is None else len(self._items)

    @overload
    def __getitem__(self, index: int) -> Item: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Item]: ...

    def __getitem__(self, index: int | slice) -> Item | Sequence[Item]:
        return self._validated()[index]

    def __iter__(self) -> Iterator[Item]:
        return iter(self._validated())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self._items is None and self._raws is None:  # a repr never parses (nor raises)
            return f"Page({self.model.__name__}, records not read yet)"
        return f"Page({self.model.__name__}, {len(self)} records)"


def listing_items(content: bytes, source: str) -> tuple[list[Any], bool]:
    """The records of a list page's answer (`_embedded.items`), and whether only the lenient
    parser could read them (`lenient_json`); a one-line PimError when there are none to read."""
    lenient = False
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        body, lenient = lenient_json(content), True
    items = embedded_items(body)
    if items is None:
        # Its envelope read well (the client checks it), so the answer was damaged on the way:
        # nothing of it is staged, and the next run reads the page again.
        problem = "that is not JSON" if body is None else "without `_embedded.items`"
        raise PimError(
            f"the PIM sent a page of {source} {problem}; nothing of it was staged, "
            "run the import again"
        )
    return items, lenient


def lenient_json(content: bytes) -> Any:
    """The body parsed with invalid UTF-8 kept as lone surrogates, or None if it is no JSON.

    orjson refuses a whole page for one record with a stray byte; reading it this way lets that
    record alone be quarantined and the rest of the page staged.
    """
    try:
        return json.loads(content.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return None


# A record larger than this is quarantined, not staged: Akeneo's largest text value holds
# 65,535 characters, so a record of megabytes is a mistake (a file pasted into a text field),
# and it would weigh on every hash, payload and request that carries it.
MAX_RECORD_BYTES = 4_000_000


def _screen(model: type[PimRecord], raw: Any) -> Rejected | None:
    """The rejection of a record that cannot be staged as sent (text that is not valid UTF-8,
    or larger than MAX_RECORD_BYTES); None when it can."""
    try:
        size = len(orjson.dumps(raw))
    except TypeError as exc:
        where = _first_invalid_text(raw)
        if where is not None:
            reason = f"{where}: text that is not valid UTF-8 in the PIM's answer"
        else:
            reason = f"cannot be stored as JSON ({exc})"
        return Rejected(_fallback_code(model, raw), raw, reason)
    if size > MAX_RECORD_BYTES:
        reason = (
            f"record of {size / 1e6:.1f} MB, larger than the {MAX_RECORD_BYTES / 1e6:.0f} MB "
            "pimsync stages: look for a file pasted into a text value"
        )
        return Rejected(_fallback_code(model, raw), raw, reason)
    return None


def _first_invalid_text(value: Any, where: str = "record") -> str | None:
    """The path of the first string in `value` holding a lone surrogate, if any."""
    if isinstance(value, str):
        return None if _valid(value) else where
    children: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = key if where == "record" else f"{where}.{key}"
            children += [(path, key), (path, item)]
    elif isinstance(value, list):
        children = [(f"{where}[{index}]", item) for index, item in enumerate(value)]
    for path, child in children:
        found = _first_invalid_text(child, path)
        if found is not None:
            return found
    return None


def _valid(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (text read leniently may hold lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse(model: type[PimRecord], raw: Any) -> Item:
    try:
        record = model.model_validate(raw)
        record.staging_code()
    except ValidationError as exc:
        return Rejected(_fallback_code(model, raw), raw, describe_validation_error(exc))
    except ValueError as exc:
        return Rejected(_fallback_code(model, raw), raw, str(exc))
    return Parsed(record, raw)


def _fallback_code(model: type[PimRecord], raw: Any) -> str:
    """The code a rejected record is quarantined under: its own when readable, else its hash."""
    if isinstance(raw, dict):
        for key in model.key_fields:
            value = raw.get(key)
            if isinstance(value, str) and 0 < len(value) <= 200 and _valid(value):
                parent = raw.get(model.parent_key) if model.parent_key else None
                return f"{parent}/{value}" if isinstance(parent, str) else value
    try:
        data = orjson.dumps(raw, default=str)
    except TypeError:  # text that is not valid UTF-8
        data = repr(raw).encode("utf-8", "backslashreplace")
    return f"invalid:{hashlib.sha256(data).hexdigest()[:16]}"
