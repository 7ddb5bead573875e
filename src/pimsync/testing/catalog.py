"""A deterministic, lazy Akeneo catalog for the mock PIM.

Product `i` is computed on demand from `i` and the seed (hash arithmetic plus templates built once),
so 1,000,000 products cost almost no memory. Only what tests patched, created or deleted lives in
the overrides `Catalog.products` / `Catalog.models`.

Layout: indices come in blocks of 100 that share one seeded template. In each block 30 slots are
variants grouped under root models of 2 to 6 variants (`model_000123`); the rest are simple
products. Shoes use a 2-level family variant, so their root models have sub models
(`model_000123_red`). The base `updated` of product `i` is `EPOCH + i // 500` s: 500 products share
each second, and `updated > X` over unmodified products is an index bisection, not a scan.

Records (`product_record`, `model_record`) hold an item's *own* values (its level only) and integer
epoch timestamps; `pimsync.testing.fake_pim_render` renders them as API JSON.
"""

from __future__ import annotations

import hashlib
import random
import re
import struct
from datetime import UTC, datetime
from typing import NamedTuple

from pimsync.testing.fake_pim_structure import (
    COLORS,
    FAMILY_CODES,
    FAMILY_VARIANT,
    JSON,
    SIZES,
    Structure,
    ValueFactory,
    mix,
)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH_TS = int(EPOCH.timestamp())
PRODUCTS_PER_SECOND = 500
BLOCK = 100
VARIANTS_PER_BLOCK = 30
_M48, _M64 = (1 << 48) - 1, (1 << 64) - 1
_MODEL_CODE = re.compile(r"model_(\d{6,})(?:_([a-z]+))?")
_SKU = re.compile(r"SKU-(\d{7,})")
_MEDIA_NAME = re.compile(r"[0-9a-f]{40}_SKU_(\d{7,})\.jpg")
_VARIANT_NIBBLE = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 4122 variant


def base_updated(index: int) -> int:
    """Epoch seconds of unmodified product `index` (its `created` and `updated`)."""
    return EPOCH_TS + index // PRODUCTS_PER_SECOND


# A valid 8x8 grey baseline JPEG (quant table of ones, one-code Huffman tables, DC 0 then EOB);
# a COM segment right after SOI carries per-file bytes, so every file and sha1 differ.
_JPEG_TAIL = bytes.fromhex(
    "ffdb004300" + "01" * 64 + "ffc0000b080008000801011100"
    "ffc4001400" + "01" + "00" * 15 + "00" + "ffc4001410" + "01" + "00" * 15 + "00"
    "ffda000801010000003f00" + "3f" + "ffd9"
)


def media_content(seed: int, index: int) -> bytes:
    """Bytes of product `index`'s picture: a 320-byte JPEG, unique per (seed, index)."""
    return b"\xff\xd8\xff\xfe\x00\x92" + struct.pack(">QQ", seed & _M64, index) * 9 + _JPEG_TAIL


def media_code(index: int, content: bytes) -> str:
    """Akeneo-style code `a/b/c/d/<sha1 of the bytes>_<file name>`: it contains slashes."""
    d = hashlib.sha1(content).hexdigest()
    return f"{d[0]}/{d[1]}/{d[2]}/{d[3]}/{d}_SKU_{index:07d}.jpg"


class Meta(NamedTuple):
    """What search filters look at, computed without building values."""

    family: str | None
    parent: str | None
    enabled: bool
    created: int
    updated: int  # effective: the newest of the item's and its ancestors'


class Generated(NamedTuple):
    """The inputs of a generated product (see `Catalog.generated`)."""

    h: int  # the product's 64-bit hash
    family: str
    parent: str | None
    attrs: tuple[str, ...]  # attributes of its own level
    axes: dict[str, str]  # axis values, for variants
    categories: list[str]  # shared: copy before changing
    picture: str | None  # media code


_NO_CATEGORIES: list[str] = []


class _Layout:
    """The seeded template shared by every block of 100 products."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(f"pimsync-layout-{seed}")
        sizes: list[int] = []
        remaining = VARIANTS_PER_BLOCK
        while remaining:
            size = rng.randint(2, min(6, remaining))
            if remaining - size == 1:  # never leave a 1-variant model
                size = size + 1 if size < min(6, remaining) else size - 1
            sizes.append(size)
            remaining -= size
        self.models, self.model_size = len(sizes), sizes
        self.model_family = [rng.choice(("clothing", "shoes")) for _ in sizes]
        units = ["S"] * (BLOCK - VARIANTS_PER_BLOCK) + ["G"] * len(sizes)
        rng.shuffle(units)
        self.slot_model: list[int] = []  # model number within the block, -1 for simple
        self.slot_pos: list[int] = []  # position of the variant within its model
        self.model_first: list[int] = []
        for unit in units:
            if unit == "S":
                self.slot_model.append(-1)
                self.slot_pos.append(0)
            else:
                k = len(self.model_first)
                self.model_first.append(len(self.slot_model))
                self.slot_model += [k] * sizes[k]
                self.slot_pos += range(sizes[k])
        self.model_last = [f + n - 1 for f, n in zip(self.model_first, sizes, strict=True)]
        # For simple slots, and for variant slots whose model the catalog end cuts off.
        self.slot_family = rng.choices(FAMILY_CODES, weights=(4, 3, 3), k=BLOCK)
        self.picture = [rng.random() < 0.75 for _ in range(BLOCK)]
        self.picture_slots = [s for s in range(BLOCK) if self.picture[s]]
        # 2-level models split their variants in one or two colors (sub models).
        self.model_subs = [
            ([n] if n <= 3 else [(n + 1) // 2, n // 2]) if fam == "shoes" else []
            for n, fam in zip(sizes, self.model_family, strict=True)
        ]
        # Product-model listing order within a block: each root, then its sub models.
        self.entries = [
            (k, s) for k in range(len(sizes)) for s in range(-1, len(self.model_subs[k]))
        ]
        self.entry_of = {entry: e for e, entry in enumerate(self.entries)}


class Catalog:
    """The catalog: structure, lazily generated products/models/media, and the overrides."""

    def __init__(self, products: int, seed: int = 0) -> None:
        if products < 0:
            raise ValueError("products must be >= 0")
        self.base_products = products
        self.seed = seed
        self.layout = _Layout(seed)
        self.structure = Structure()
        self.values = ValueFactory(seed)
        self._salt = mix(seed ^ 0x5EED)
        self._uuid_prefix = hashlib.sha1(f"pimsync-catalog:{seed}:".encode()).digest()
        self._uuid_mul = (mix(seed) | 1) & _M48
        self._uuid_add = mix(seed + 1) & _M48
        self._uuid_inv = pow(self._uuid_mul, -1, 1 << 48)
        self.base_model_pks = -(-products // BLOCK) * len(self.layout.entries)
        self.products: dict[int, JSON | None] = {}  # index -> own record, None once deleted
        self.models: dict[str, JSON] = {}  # code -> own record (patched or created)
        self.next_index = products
        self.created_models: list[str] = []
        self._extra_uuids: dict[str, int] = {}
        self._extra_identifiers: dict[str, int] = {}
        self.dirty_models: set[str] = set()  # models whose effective updated may have moved
        self.dirty_products: set[int] = set()  # products whose record or effective updated did
        self._dirty_sorted: list[int] | None = []
        self.model_version = 0  # bumped on every model write, for caches of model values

    # -- identities --------------------------------------------------------------------------

    def uuid(self, index: int) -> str:
        """A v5-style uuid: sha1 of (seed, index) with v5 version/variant bits, whose 48-bit node
        is an affine scramble of `index`, so a uuid maps back to its index without a table."""
        h = hashlib.sha1(self._uuid_prefix + b"%d" % index).hexdigest()
        node = (index * self._uuid_mul + self._uuid_add) & _M48
        return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT_NIBBLE[h[16]]}{h[17:20]}-{node:012x}"

    def uuid_of(self, index: int) -> str:
        """The uuid of product `index` (a created product may have brought its own)."""
        record = self.products.get(index)
        return str(record["uuid"]) if record else self.uuid(index)

    def index_of_uuid(self, uuid: str) -> int | None:
        """Index of the product that has (or had, if deleted) this uuid."""
        uuid = uuid.lower()
        if uuid in self._extra_uuids:
            return self._extra_uuids[uuid]
        try:
            index = ((int(uuid[24:], 16) - self._uuid_add) * self._uuid_inv) & _M48
        except ValueError:
            return None
        if index < self.next_index and len(uuid) == 36 and self.uuid(index) == uuid:
            return index
        return None

    def index_of_identifier(self, identifier: str) -> int | None:
        """Index of the live product whose sku is `identifier`."""
        match = _SKU.fullmatch(identifier)
        for index in (self._extra_identifiers.get(identifier), int(match[1]) if match else None):
            if index is not None and self.identifier(index) == identifier:
                return index
        return None

    def identifier(self, index: int) -> str | None:
        record = self.product_record(index)
        sku = record["values"].get("sku") if record else None
        return str(sku[0]["data"]) if sku else None

    # -- generated layout --------------------------------------------------------------------

    def _variant_slot(self, index: int) -> tuple[int, int, int] | None:
        """(block, model in block, position) when generated product `index` is a variant."""
        block, slot = divmod(index, BLOCK)
        k = self.layout.slot_model[slot]
        if k < 0 or block * BLOCK + self.layout.model_last[k] >= self.base_products:
            return None
        return block, k, self.layout.slot_pos[slot]

    def _model_exists(self, block: int, k: int) -> bool:
        return block * BLOCK + self.layout.model_last[k] < self.base_products

    def _sub_of(self, k: int, pos: int) -> tuple[int, int]:
        first = self.layout.model_subs[k][0]
        return (0, pos) if pos < first else (1, pos - first)

    def _axes(self, number: int) -> tuple[int, int]:
        h = mix(number * 0x2545F491 ^ self._salt)
        return h % len(COLORS), (h >> 8) % len(SIZES)

    def model_code(self, block: int, k: int, sub: int = -1) -> str:
        number = block * self.layout.models + k
        if sub < 0:
            return f"model_{number:06d}"
        return f"model_{number:06d}_{COLORS[(self._axes(number)[0] + sub) % len(COLORS)]}"

    def parse_model_code(self, code: str) -> tuple[int, int, int] | None:
        """(block, k, sub) of an existing generated model code."""
        match = _MODEL_CODE.fullmatch(code)
        if not match:
            return None
        block, k = divmod(int(match[1]), self.layout.models)
        if not self._model_exists(block, k):
            return None
        for sub in range(-1, len(self.layout.model_subs[k])):
            if self.model_code(block, k, sub) == code:
                return block, k, sub
        return None

    def generated_variants(self, code: str, *, direct: bool = False) -> range:
        """Indices of the generated variants below a generated model (or its direct children)."""
        parsed = self.parse_model_code(code)
        if parsed is None:
            return range(0)
        block, k, sub = parsed
        first, subs = block * BLOCK + self.layout.model_first[k], self.layout.model_subs[k]
        if sub < 0:
            return range(0) if direct and subs else range(first, first + self.layout.model_size[k])
        start = first + (subs[0] if sub == 1 else 0)
        return range(start, start + subs[sub])

    def sub_models(self, code: str) -> list[str]:
        parsed = self.parse_model_code(code)
        codes = []
        if parsed is not None and parsed[2] < 0:
            block, k, _ = parsed
            codes = [self.model_code(block, k, s) for s in range(len(self.layout.model_subs[k]))]
        codes += [c for c in self.created_models if self.models[c]["parent"] == code]
        return codes

    # -- products ----------------------------------------------------------------------------

    def generated(self, index: int) -> Generated:
        """What defines generated product `index` (0 <= index < base_products)."""
        h = mix(index ^ self._salt)
        variant = self._variant_slot(index)
        axes: dict[str, str] = {}
        if variant is None:
            family, parent = self.layout.slot_family[index % BLOCK], None
            attrs = self.structure.family_attrs[family]
            categories = self.values.category_sets[family][(h >> 56) % 48]
        else:
            block, k, pos = variant
            family, categories = self.layout.model_family[k], _NO_CATEGORIES
            color, size = self._axes(block * self.layout.models + k)
            if family == "clothing":
                parent = self.model_code(block, k)
                axes["color"] = COLORS[(color + pos // 3) % len(COLORS)]
                axes["size"] = SIZES[(size + pos % 3) % len(SIZES)]
            else:
                sub, sub_pos = self._sub_of(k, pos)
                parent = self.model_code(block, k, sub)
                axes["size"] = SIZES[(size + sub_pos) % len(SIZES)]
            attrs = self.structure.level_attrs[FAMILY_VARIANT[family]][-1]
        picture = None
        if self.layout.picture[index % BLOCK]:
            picture = media_code(index, media_content(self.seed, index))
        return Generated(h, family, parent, attrs, axes, categories, picture)

    def product_record(self, index: int) -> JSON | None:
        """The product's own record (own-level values, epoch timestamps); None if absent."""
        if index in self.products:
            return self.products[index]
        if not 0 <= index < self.base_products:
            return None
        g = self.generated(index)
        values = self.values.build(
            g.attrs, g.h, g.family, index, g.axes, f"SKU-{index:07d}", g.picture
        )
        ts = base_updated(index)
        return {
            "uuid": self.uuid(index),
            "enabled": (g.h >> 50) % 20 != 0,
            "family": g.family,
            "categories": list(g.categories),
            "groups": [],
            "parent": g.parent,
            "values": values,
            "created": ts,
            "updated": ts,
            "associations": {},
            "quantified_associations": {},
        }

    def product_meta(self, index: int) -> Meta | None:
        """(family, parent, enabled, created, effective updated), without building values.

        The effective `updated` is the newest of the product's and its ancestors' (Akeneo indexes
        variants that way, so a model change surfaces its variants under `updated >`).
        """
        if index in self.dirty_products:
            record = self.product_record(index)
            if record is None:
                return None
            updated = record["updated"]
            if record["parent"]:
                updated = max(updated, self.model_updated(record["parent"]))
            return Meta(
                record["family"], record["parent"], record["enabled"], record["created"], updated
            )
        if not 0 <= index < self.base_products:
            return None
        enabled = (mix(index ^ self._salt) >> 50) % 20 != 0
        ts = base_updated(index)
        variant = self._variant_slot(index)
        if variant is None:
            return Meta(self.layout.slot_family[index % BLOCK], None, enabled, ts, ts)
        block, k, pos = variant
        family = self.layout.model_family[k]
        parent = self.model_code(block, k, self._sub_of(k, pos)[0] if family == "shoes" else -1)
        return Meta(family, parent, enabled, ts, ts)

    def put_product(self, index: int, record: JSON | None) -> None:
        """Store an override (a patched or created product, or None for a deleted one)."""
        old = self.products.get(index)
        self.products[index] = record
        self.dirty_products.add(index)
        self._dirty_sorted = None
        for rec in (old, record):
            if rec is not None and rec["uuid"] != self.uuid(index):
                self._extra_uuids[rec["uuid"]] = index
        sku = record["values"].get("sku") if record else None
        if sku and str(sku[0]["data"]) != f"SKU-{index:07d}":
            self._extra_identifiers[str(sku[0]["data"])] = index

    def new_index(self) -> int:
        self.next_index += 1
        return self.next_index - 1

    def dirty_product_list(self) -> list[int]:
        if self._dirty_sorted is None:
            self._dirty_sorted = sorted(self.dirty_products)
        return self._dirty_sorted

    # -- product models ----------------------------------------------------------------------

    def model_record(self, code: str) -> JSON | None:
        """The model's own record (own-level values, epoch timestamps), or None."""
        if code in self.models:
            return self.models[code]
        parsed = self.parse_model_code(code)
        if parsed is None:
            return None
        block, k, sub = parsed
        number = block * self.layout.models + k
        family = self.layout.model_family[k]
        fv = FAMILY_VARIANT[family]
        h = mix((number << 2 | (sub + 1)) ^ self._salt ^ 0xABCDEF)
        axes: dict[str, str] = {}
        parent, categories = None, self.values.categories(family, h)
        if sub >= 0:
            axes["color"] = COLORS[(self._axes(number)[0] + sub) % len(COLORS)]
            parent, categories = self.model_code(block, k), []
        attrs = self.structure.level_attrs[fv][0 if sub < 0 else 1]
        ts = base_updated(block * BLOCK + self.layout.model_first[k])
        return {
            "code": code,
            "family": family,
            "family_variant": fv,
            "parent": parent,
            "categories": categories,
            "values": self.values.build(attrs, h, family, number, axes, None, None),
            "created": ts,
            "updated": ts,
            "associations": {},
            "quantified_associations": {},
        }

    def model_updated(self, code: str) -> int:
        """Effective `updated` of a model: the newest of itself and its root."""
        record = self.model_record(code)
        if record is None:
            return 0
        ts: int = record["updated"]
        return max(ts, self.model_updated(record["parent"])) if record["parent"] else ts

    def put_model(self, record: JSON) -> None:
        """Store a patched or created model and mark it and its descendants dirty."""
        code = record["code"]
        if code not in self.models and self.parse_model_code(code) is None:
            self.created_models.append(code)
        self.models[code] = record
        self.model_version += 1
        for model in [code, *self.sub_models(code)]:
            self.dirty_models.add(model)
            self.dirty_products.update(self.generated_variants(model))
        self._dirty_sorted = None

    def model_pk(self, code: str) -> int | None:
        """Position of a model in the listing order (its `search_after` primary key)."""
        if code in self.models and code in self.created_models:
            return self.base_model_pks + self.created_models.index(code)
        parsed = self.parse_model_code(code)
        if parsed is None:
            return None
        block, k, sub = parsed
        return block * len(self.layout.entries) + self.layout.entry_of[(k, sub)]

    def model_at(self, pk: int) -> str | None:
        """Code of the model at listing position `pk`, if one exists there."""
        if pk >= self.base_model_pks:
            extra = pk - self.base_model_pks
            return self.created_models[extra] if extra < len(self.created_models) else None
        block, e = divmod(pk, len(self.layout.entries))
        k, sub = self.layout.entries[e]
        return self.model_code(block, k, sub) if self._model_exists(block, k) else None

    def model_base_updated(self, pk: int) -> int:
        """Base `updated` at listing position `pk`; non-decreasing in `pk`, so bisectable."""
        block, e = divmod(pk, len(self.layout.entries))
        return base_updated(block * BLOCK + self.layout.model_first[self.layout.entries[e][0]])

    # -- media files -------------------------------------------------------------------------

    def media_count(self) -> int:
        full, rest = divmod(self.base_products, BLOCK)
        return full * len(self.layout.picture_slots) + sum(self.layout.picture[:rest])

    def media_at(self, position: int) -> tuple[str, int, bytes]:
        """(code, product index, bytes) of the `position`-th media file in listing order."""
        block, nth = divmod(position, len(self.layout.picture_slots))
        index = block * BLOCK + self.layout.picture_slots[nth]
        content = media_content(self.seed, index)
        return media_code(index, content), index, content

    def media(self, code: str) -> tuple[int, bytes] | None:
        """(product index, bytes) of a media file code, or None if there is no such file."""
        match = _MEDIA_NAME.search(code)
        if not match or int(match[1]) >= self.base_products:
            return None
        index = int(match[1])
        content = media_content(self.seed, index)
        ok = self.layout.picture[index % BLOCK] and media_code(index, content) == code
        return (index, content) if ok else None
