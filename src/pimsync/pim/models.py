"""Pydantic models of the Akeneo records pimsync stages.

They validate the shape the rest of pimsync relies on (codes, parents, value entries) and let
everything else through: the staged record is the PIM's own JSON, so a field Akeneo adds later
is kept and hashed, not dropped. A record that fails validation is quarantined, not staged.
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from typing_extensions import TypedDict

# Akeneo codes are [a-zA-Z0-9_]; media file codes add "/", "." and "-" (they are paths).
CODE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
MAX_CODE_LENGTH = 255


class PimRecord(BaseModel):
    """Base for every PIM record: unknown fields are kept, known ones are checked."""

    model_config = ConfigDict(extra="allow", frozen=True)

    entity: ClassVar[str]
    # Where a record's code is read from, to quarantine it under that code when it is invalid.
    key_fields: ClassVar[tuple[str, ...]] = ("code",)
    # The field naming the parent when the staging code is "<parent>/<code>".
    parent_key: ClassVar[str | None] = None

    def staging_code(self) -> str:
        raise NotImplementedError

    def staging_identifier(self) -> str | None:
        return None

    def staging_parent(self) -> str | None:
        return None

    def staging_label(self) -> str | None:
        labels = getattr(self, "labels", None)
        if isinstance(labels, dict) and labels:
            first = labels.get("en_US") or next(iter(labels.values()))
            return str(first)[:255] if first is not None else None
        return None

    def staging_updated(self) -> str | None:
        updated = getattr(self, "updated", None)
        return str(updated) if updated else None


class CodedRecord(PimRecord):
    code: str = Field(min_length=1, max_length=MAX_CODE_LENGTH, pattern=CODE_PATTERN)
    labels: dict[str, str | None] = Field(default_factory=dict)
    updated: str | None = None

    def staging_code(self) -> str:
        return self.code


class Attribute(CodedRecord):
    entity = "attributes"
    type: str = Field(min_length=1)
    localizable: bool = False
    scopable: bool = False


class AttributeOption(CodedRecord):
    entity = "attribute_options"
    parent_key = "attribute"
    attribute: str = Field(min_length=1, max_length=MAX_CODE_LENGTH, pattern=CODE_PATTERN)

    def staging_code(self) -> str:
        return f"{self.attribute}/{self.code}"

    def staging_identifier(self) -> str | None:
        return self.code

    def staging_parent(self) -> str | None:
        return self.attribute


class Family(CodedRecord):
    entity = "families"
    attributes: list[str] = Field(default_factory=list)


class VariantAttributeSet(BaseModel):
    level: int = Field(ge=1, le=2)
    axes: list[str] = Field(min_length=1, max_length=5)
    attributes: list[str] = Field(default_factory=list)


class FamilyVariant(CodedRecord):
    entity = "family_variants"
    parent_key = "family"
    # Not in Akeneo's payload: the client adds the family it listed the variant under.
    family: str = Field(min_length=1, max_length=MAX_CODE_LENGTH, pattern=CODE_PATTERN)
    variant_attribute_sets: list[VariantAttributeSet] = Field(min_length=1)

    def staging_code(self) -> str:
        return f"{self.family}/{self.code}"

    def staging_identifier(self) -> str | None:
        return self.code

    def staging_parent(self) -> str | None:
        return self.family


class Category(CodedRecord):
    entity = "categories"
    parent: str | None = None

    def staging_parent(self) -> str | None:
        return self.parent


class ValueEntry(TypedDict):
    """One `{"locale", "scope", "data"}` entry of a product value.

    A TypedDict, not a model: validating one costs a fraction of building an object, and an
    import validates tens of these per product.
    """

    locale: str | None
    scope: str | None
    data: Any


Values = dict[str, list[ValueEntry]]


class ProductModel(PimRecord):
    entity = "product_models"
    code: str = Field(min_length=1, max_length=MAX_CODE_LENGTH, pattern=CODE_PATTERN)
    family: str | None = None
    family_variant: str | None = None
    parent: str | None = None
    categories: list[str] = Field(default_factory=list)
    values: Values = Field(default_factory=dict)
    updated: str | None = None

    def staging_code(self) -> str:
        return self.code

    def staging_parent(self) -> str | None:
        return self.parent

    def staging_label(self) -> str | None:
        return _label_from_values(self.values)


class Product(PimRecord):
    """A product from `/products-uuid` (keyed by uuid) or `/products` (keyed by identifier)."""

    entity = "products"
    key_fields = ("uuid", "identifier")
    uuid: UUID | None = None
    identifier: str | None = Field(default=None, max_length=MAX_CODE_LENGTH)
    family: str | None = None
    parent: str | None = None
    categories: list[str] = Field(default_factory=list)
    enabled: bool = True
    values: Values = Field(default_factory=dict)
    updated: str | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _empty_values_list(cls, value: Any) -> Any:
        # Some PHP serializers emit [] for an empty map.
        return {} if value == [] else value

    def staging_code(self) -> str:
        if self.uuid is not None:
            return str(self.uuid)
        if self.identifier:
            return self.identifier
        raise ValueError("product has neither uuid nor identifier")

    def staging_identifier(self, identifier_attribute: str = "sku") -> str | None:
        """The SKU: `identifier` on /products, the identifier value on /products-uuid."""
        if self.identifier:
            return self.identifier
        for entry in self.values.get(identifier_attribute, []):
            if isinstance(entry["data"], str) and entry["data"]:
                return entry["data"][:MAX_CODE_LENGTH]
        return None

    def staging_parent(self) -> str | None:
        return self.parent

    def staging_label(self) -> str | None:
        return _label_from_values(self.values)


class MediaFile(PimRecord):
    entity = "assets"
    code: str = Field(min_length=1, max_length=MAX_CODE_LENGTH, pattern=r"^[A-Za-z0-9_./\-]+$")
    original_filename: str | None = None
    mime_type: str | None = None
    size: int | None = Field(default=None, ge=0)

    def staging_code(self) -> str:
        return self.code

    def staging_label(self) -> str | None:
        return self.original_filename


def _label_from_values(values: Values) -> str | None:
    entries = values.get("name") or []
    for entry in entries:
        if entry["locale"] in (None, "en_US") and isinstance(entry["data"], str):
            return entry["data"][:255]
    for entry in entries:
        if isinstance(entry["data"], str):
            return entry["data"][:255]
    return None


def describe_validation_error(exc: ValidationError) -> str:
    """A one-line reason for the quarantine column: the first few field errors."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "record"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
