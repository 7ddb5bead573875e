"""What `MagentoClient` returns besides plain product/category/attribute dicts.

Store topology is validated here (the push stage keys everything by these ids); bulk results are
built by the client, one per request item, keyed by the item's index in the submitted array.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

BulkItemStatus = Literal["accepted", "rejected"]
# complete (1), retriable (2, or 3 with a lock message), failed (3), open (4), rejected (5 or
# refused when the bulk was accepted).
OperationStatus = Literal["complete", "retriable", "failed", "open", "rejected"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class StoreView(_Model):
    """A store view: the `code` goes in `/rest/<code>/V1` URLs."""

    code: str
    id: int
    website_id: int


class Website(_Model):
    code: str
    id: int


class BulkItem(_Model):
    """One item of a bulk request as Magento acknowledged it (`request_items`)."""

    index: int
    status: BulkItemStatus
    message: str | None = None


class BulkSubmission(_Model):
    """The 202 answer of `/async/bulk/V1/...`: the bulk id and every item's acceptance."""

    bulk_uuid: str
    items: list[BulkItem]

    @property
    def accepted(self) -> list[int]:
        return [item.index for item in self.items if item.status == "accepted"]

    @property
    def rejected(self) -> list[BulkItem]:
        return [item for item in self.items if item.status == "rejected"]


class OperationResult(_Model):
    """The outcome of one bulk item; `index` is its position in the submitted array."""

    index: int
    status: OperationStatus
    message: str

    @property
    def ok(self) -> bool:
        return self.status == "complete"
