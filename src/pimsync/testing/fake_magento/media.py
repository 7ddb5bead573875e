"""Media gallery: ``/V1/products/{sku}/media`` and ``media_gallery_entries`` in a product save.

The trap a client must respect: in a product save, an absent or null ``media_gallery_entries``
leaves images alone, but ``[]`` deletes every image, and any existing entry missing from a
non-empty list is removed too.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .context import Call
from .errors import ApiError, product_not_found
from .product_view import media_view
from .state import CatalogState, now
from .store import MediaEntry, Product

BAD_BASE64 = "The image content must be valid base64 encoded data."
BAD_MIME = "The image MIME type is not valid or not supported."
BAD_NAME = "Provided image name contains forbidden characters."
NO_CONTENT = "The image content is invalid. Verify the content and try again."
NO_IMAGE = "No image with the provided ID was found. Verify the ID and try again."
IMAGE_MISSING = "The image doesn't exist. Verify and try again."

_FORBIDDEN = set('\\/?*:";<>()|{}')
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif"}


def sniff(data: bytes) -> str | None:
    """The MIME type ``getimagesizefromstring`` would find, for the formats Magento allows."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def _new_file(state: CatalogState, content: Any) -> str:
    """Validate ``entry.content`` like ``ImageContentValidator``; return the stored file path."""
    if not isinstance(content, dict):
        raise ApiError(400, NO_CONTENT)
    try:
        data = base64.b64decode(str(content.get("base64_encoded_data") or ""), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, BAD_BASE64) from None
    mime = sniff(data)
    if mime is None:
        raise ApiError(400, BAD_BASE64)
    declared = str(content.get("type") or "").lower().replace("image/jpg", "image/jpeg")
    if declared != mime:
        raise ApiError(400, BAD_MIME)
    name = str(content.get("name") or "")
    if not name or any(ch in _FORBIDDEN for ch in name):
        raise ApiError(400, BAD_NAME)
    if "." not in name:
        name = f"{name}.{_EXTENSIONS[mime]}"
    stem, ext = name.rsplit(".", 1)
    disperse = [(c if c.isalnum() else "_") for c in (stem.lower() + "__")[:2]]
    path = f"/{disperse[0]}/{disperse[1]}/{name}"
    counter = 0
    while path in state.media_files:  # Magento suffixes duplicate names: front_1.png
        counter += 1
        path = f"/{disperse[0]}/{disperse[1]}/{stem}_{counter}.{ext}"
    return path


def _claim_roles(entries: list[MediaEntry], owner: MediaEntry) -> None:
    """Roles are exclusive: giving ``image`` to one entry takes it from the others."""
    for entry in entries:
        if entry is not owner:
            entry.types = [t for t in entry.types if t not in owner.types]


def _entry_from(
    state: CatalogState, raw: dict[str, Any], file: str, entry_id: int | None
) -> MediaEntry:
    return MediaEntry(
        id=next(state.media_ids) if entry_id is None else entry_id,
        file=file,
        media_type=str(raw.get("media_type") or "image"),
        label=raw.get("label"),
        position=int(raw.get("position") or 0),
        disabled=bool(raw.get("disabled", False)),
        types=[str(t) for t in raw.get("types") or []],
    )


def replace_gallery(
    state: CatalogState, current: list[MediaEntry], entries: list[Any]
) -> tuple[list[MediaEntry], list[str]]:
    """Apply a save's ``media_gallery_entries`` list; return the new gallery and new files.

    Nothing is mutated, so a save that fails later leaves the gallery as it was.
    """
    by_id = {e.id: e for e in current}
    by_file = {e.file: e for e in current}
    result: list[MediaEntry] = []
    new_files: list[str] = []
    for raw in entries:
        if not isinstance(raw, dict):
            raise ApiError(400, NO_CONTENT)
        raw_id = _int_or_none(raw.get("id"))
        old = (by_id.get(raw_id) if raw_id is not None else None) or by_file.get(
            str(raw.get("file"))
        )
        if raw.get("content"):
            file = _new_file(state, raw["content"])
            while file in new_files:
                stem, ext = file.rsplit(".", 1)
                file = f"{stem}_1.{ext}"
            new_files.append(file)
            result.append(_entry_from(state, raw, file, old.id if old else None))
        elif old is not None:
            result.append(_entry_from(state, {**media_view(old), **raw}, old.file, old.id))
        else:
            raise ApiError(400, NO_CONTENT)
    for entry in result:
        _claim_roles(result, entry)
    return result, new_files


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _product(call: Call) -> Product:
    product = call.state.product_by_sku(call.params["sku"])
    if product is None:
        raise product_not_found()
    return product


def _entry(product: Product, entry_id: int, message: str) -> MediaEntry:
    for entry in product.media:
        if entry.id == entry_id:
            return entry
    raise ApiError(404, message)


def _out_id(call: Call, value: int) -> int | str:
    return str(value) if call.state.settings.string_ids else value


def create_entry(call: Call) -> int | str:
    """``POST /V1/products/{sku}/media``: add one image; answer its new id."""
    product = _product(call)
    raw = call.part("entry")
    if not raw.get("content"):
        raise ApiError(400, NO_CONTENT)
    file = _new_file(call.state, raw["content"])
    entry = _entry_from(call.state, raw, file, None)
    call.state.media_files.add(file)
    product.media.append(entry)
    _claim_roles(product.media, entry)
    product.updated_at = now()
    return _out_id(call, entry.id)


def update_entry(call: Call) -> bool:
    """``PUT /V1/products/{sku}/media/{entryId}``."""
    product = _product(call)
    raw = call.part("entry")
    entry = _entry(product, call.int_param("entryId"), NO_IMAGE)
    file = entry.file
    if raw.get("content"):
        file = _new_file(call.state, raw["content"])
        call.state.media_files.add(file)
    updated = _entry_from(call.state, {**media_view(entry), **raw}, file, entry.id)
    product.media[product.media.index(entry)] = updated
    _claim_roles(product.media, updated)
    product.updated_at = now()
    return True


def delete_entry(call: Call) -> bool:
    product = _product(call)
    entry = _entry(product, call.int_param("entryId"), NO_IMAGE)
    product.media.remove(entry)
    product.updated_at = now()
    return True


def list_entries(call: Call) -> list[dict[str, Any]]:
    return [media_view(e) for e in _product(call).media]


def get_entry(call: Call) -> dict[str, Any]:
    return media_view(_entry(_product(call), call.int_param("entryId"), IMAGE_MISSING))
