"""Fixtures shared by the FakeMagento tests: the fake and an authenticated client on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pimsync.testing.fake_magento import FakeMagento

AUTH = {"Authorization": "Bearer magento-token"}


@pytest.fixture
def fm() -> Iterator[FakeMagento]:
    fake = FakeMagento(consumer=False)
    yield fake
    fake.close()


@pytest.fixture
def client(fm: FakeMagento) -> Iterator[httpx.Client]:
    transport = httpx.MockTransport(fm)
    with httpx.Client(transport=transport, base_url="http://magento.test", headers=AUTH) as c:
        yield c


def product(sku: str, **fields: Any) -> dict[str, Any]:
    """A product save body with what Magento requires on create."""
    body = {"sku": sku, "name": f"Product {sku}", "attribute_set_id": 4, "price": 10}
    body.update(fields)
    return {"product": body}


def custom(view: dict[str, Any], code: str) -> Any:
    """A custom attribute's value in a product or category view."""
    return next(
        (item["value"] for item in view["custom_attributes"] if item["attribute_code"] == code),
        None,
    )
