"""What a push reads from Magento before its first item (pimsync.pipeline.push_context)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from pimsync.app import App
from pimsync.errors import ConfigError
from pimsync.magento.client import MagentoClient
from pimsync.pipeline.push_context import build_push_context
from pimsync.testing.fake_magento import FakeMagento
from tests.conftest import make_config

SETUP_READS = ("/store/storeViews", "/store/websites", "/products/attribute-sets/sets/list")


def test_stores_websites_and_attribute_sets_are_read_together(tmp_path: Path):
    """Each of the three reads waits at a barrier until the other two have arrived: read one
    after the other, the first would wait alone and the barrier would break."""
    fake = FakeMagento(consumer=False)
    arrived = threading.Barrier(len(SETUP_READS), timeout=10)
    broken: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(SETUP_READS):
            try:
                arrived.wait()
            except threading.BrokenBarrierError:
                broken.append(request.url.path)
        return fake(request)

    config = make_config(
        f"sqlite:///{tmp_path / 'staging.db'}",
        PIMSYNC_MAGENTO__BASE_URL="http://magento.test",
        PIMSYNC_MAGENTO__TOKEN="magento-token",
    )
    app = App(config)
    try:
        transport = httpx.MockTransport(handler)
        with app.repository() as repo, MagentoClient.from_config(config.magento, transport) as c:
            context = build_push_context(repo, c, config)
        assert broken == []
        assert context.catalog.store_ids["default"] == 1
        assert context.set_ids_by_name["Default"] == 4
    finally:
        app.close()
        fake.close()


def test_a_mapping_that_names_no_store_view_is_a_config_error(tmp_path: Path):
    fake = FakeMagento(consumer=False)
    config = make_config(
        f"sqlite:///{tmp_path / 'staging.db'}",
        PIMSYNC_MAGENTO__BASE_URL="http://magento.test",
        PIMSYNC_MAGENTO__TOKEN="magento-token",
        PIMSYNC_MAPPING__LOCALES='{"en_US": "nowhere"}',
    )
    app = App(config)
    try:
        transport = httpx.MockTransport(fake)
        with (
            app.repository() as repo,
            MagentoClient.from_config(config.magento, transport) as c,
            pytest.raises(ConfigError, match="mapping does not match") as raised,
        ):
            build_push_context(repo, c, config)
        assert any("no store view 'nowhere'" in line for line in raised.value.problems)
    finally:
        app.close()
        fake.close()
