"""A Magento 2.4 REST API fake for unit tests, integration tests and the demo.

`FakeMagento` is a plain ``(httpx.Request) -> httpx.Response`` handler with in-memory state:
run it under ``httpx.MockTransport`` or behind ``pimsync.testing.server.serve``. It reproduces
the REST facts and traps of ``shared/reference/magento-rest-api.md``: store-scoped URLs and
fallback, Magento's error bodies, asynchronous bulk with a background consumer, and fault
injection for retry tests.
"""

from __future__ import annotations

from .bulk import COMPLETE, NOT_RETRIABLY_FAILED, OPEN, REJECTED, RETRIABLY_FAILED
from .errors import ApiError
from .fake import FakeMagento, RequestRecord
from .store import StoreView

__all__ = [
    "COMPLETE",
    "NOT_RETRIABLY_FAILED",
    "OPEN",
    "REJECTED",
    "RETRIABLY_FAILED",
    "ApiError",
    "FakeMagento",
    "RequestRecord",
    "StoreView",
]
