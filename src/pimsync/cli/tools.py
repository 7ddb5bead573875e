"""Tool commands: db upgrade and the bundled mock servers."""

from __future__ import annotations

import click

from pimsync.app import App
from pimsync.cli.base import CONTEXT_SETTINGS, cli, pass_app
from pimsync.errors import ConfigError


@cli.group("db", context_settings=CONTEXT_SETTINGS)
def db() -> None:
    """Manage the staging database."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Apply the staging schema migrations (done at the start of every command anyway).

    \b
        pimsync db upgrade
    """
    from pimsync.staging.database import current_revision

    engine = app.engine()
    click.echo(f"staging database at revision {current_revision(engine)}")


@cli.group("mock", context_settings=CONTEXT_SETTINGS)
def mock() -> None:
    """Serve the bundled fake PIM or Magento on 127.0.0.1 (for demos and smoke tests)."""


@mock.command("pim")
@click.option("--port", default=8081, show_default=True, type=click.IntRange(0, 65535))
@click.option("--products", default=5000, show_default=True, type=click.IntRange(0))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--latency", default=0.0, show_default=True, help="Seconds added to each answer.")
@click.option("--error-rate", default=0.0, show_default=True, help="Share of 5xx answers.")
def mock_pim(port: int, products: int, seed: int, latency: float, error_rate: float) -> None:
    """Serve an Akeneo-compatible PIM with a generated catalog.

    Credentials: client_id pimsync, secret pimsync-secret, username pimsync,
    password pimsync-password.

    \b
        pimsync mock pim --port 8081 --products 5000
    """
    from pimsync.testing.catalog import Catalog
    from pimsync.testing.fake_pim import FakePim, Faults
    from pimsync.testing.server import serve_forever

    if not 0 <= error_rate <= 1 or latency < 0:
        raise ConfigError("--error-rate must be within 0..1 and --latency at least 0")
    pim = FakePim(Catalog(products, seed=seed))
    pim.faults = Faults(latency=latency, error_rate=error_rate, seed=seed)
    serve_forever(pim, port=port, on_ready=lambda url: click.echo(f"mock PIM at {url}", err=True))


@mock.command("magento")
@click.option("--port", default=8082, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", default="magento-token", show_default=True)
@click.option("--latency", default=0.0, show_default=True, help="Seconds added to each answer.")
def mock_magento(port: int, token: str, latency: float) -> None:
    """Serve a Magento-compatible REST API (stores default, fr, de on website base).

    \b
        pimsync mock magento --port 8082
    """
    from pimsync.testing.fake_magento import FakeMagento
    from pimsync.testing.server import serve_forever

    if latency < 0:
        raise ConfigError("--latency must be at least 0")
    with FakeMagento(token=token, latency=latency) as magento:
        serve_forever(
            magento, port=port, on_ready=lambda url: click.echo(f"mock Magento at {url}", err=True)
        )
