"""App: the configuration plus the things built from it, shared by every command.

The CLI builds one App per invocation; tests build one with fake transports. Nothing here is
created until a command asks for it, so `pimsync --help` and `pimsync mock` need no database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import httpx
from sqlalchemy import Engine

from pimsync.config import Config
from pimsync.lock import RunLock, holding
from pimsync.magento.client import MagentoClient
from pimsync.pim.client import PimClient
from pimsync.staging.database import open_engine, upgrade
from pimsync.staging.repository import StagingRepository

log = logging.getLogger("pimsync")


@dataclass
class App:
    """Configuration and factories; `pim_transport` lets tests talk to a fake PIM in-process."""

    config: Config
    pim_transport: httpx.BaseTransport | None = None
    magento_transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    _engine: Engine | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for section in ("pim", "magento"):
            settings = getattr(self.config, section)
            if not settings.verify_tls and settings.base_url is not None:
                log.warning(
                    "TLS certificate verification is OFF for [%s] %s: anyone on the path can "
                    "read the credentials; set [%s] ca_bundle instead of verify_tls = false",
                    section,
                    settings.base_url,
                    section,
                )

    def engine(self) -> Engine:
        """The staging engine, migrated to the newest schema on first use."""
        if self._engine is None:
            engine = open_engine(self.config.staging.url)
            upgrade(engine)
            self._engine = engine
        return self._engine

    @property
    def engine_started(self) -> bool:
        """Whether the staging engine exists (and may hold pooled connections)."""
        return self._engine is not None

    def repository(self) -> StagingRepository:
        return StagingRepository(self.engine())

    def pim_client(self) -> PimClient:
        return PimClient.from_config(self.config.pim, self.pim_transport, sleep=self.sleep)

    def magento_client(self) -> MagentoClient:
        return MagentoClient.from_config(
            self.config.magento, self.magento_transport, sleep=self.sleep
        )

    def pim_client_or_none(self) -> AbstractContextManager[PimClient | None]:
        """The PIM client when a PIM is configured (the push downloads images through it)."""
        if self.config.pim.base_url is None:
            return nullcontext(None)
        return self.pim_client()

    @contextmanager
    def exclusive(self, kind: str) -> Iterator[RunLock]:
        """Hold the staging database's run lock (a lease) for the block; see `pimsync.lock`."""
        with holding(self.engine(), kind, self.config.sync.lock_lease_seconds) as lock:
            yield lock

    @contextmanager
    def using(self, config: Config) -> Iterator[None]:
        """Run the block with another configuration (a resumed run's), then restore this one."""
        saved, self.config = self.config, config
        try:
            yield
        finally:
            self.config = saved

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
