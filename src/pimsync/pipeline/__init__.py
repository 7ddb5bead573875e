"""The two stages: import (PIM -> staging) and push (staging -> Magento)."""

from pimsync.pipeline.imports import run_full_import, run_incremental_import

__all__ = ["run_full_import", "run_incremental_import"]
