"""The two stages: import (PIM -> staging) and push (staging -> Magento)."""

from pimsync.pipeline.imports import run_full_import, run_incremental_import
from pimsync.pipeline.push import PushOptions, order_push_feeds, run_push

__all__ = [
    "PushOptions",
    "order_push_feeds",
    "run_full_import",
    "run_incremental_import",
    "run_push",
]
