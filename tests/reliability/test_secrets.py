"""Secrets never leave pimsync, whatever goes wrong: not in output, errors, logs or staging.

Command-line runs against the fakes (in-process), with distinctive credentials: a good run,
a PIM failing until the import gives up, a PIM refusing the password, Magento revoking the token
mid-way, a staging URL whose password fails to connect. After them, neither what the runs
printed and logged nor the bytes of the staging database contain any of the secrets.

Related: tests/unit/test_pim_client.py::test_bad_credentials_name_the_settings_and_never_the_
secret, tests/unit/test_magento_client.py::test_401_stops_the_run_without_leaking_the_token,
tests/cli/test_cli.py::test_pim_refusing_credentials_exits_4_and_hides_the_secret.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import httpx
import pytest
from click.testing import CliRunner, Result

from pimsync.app import App
from pimsync.cli import base, cli
from pimsync.config import Config
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim

SECRET = "pim-secret-7f3a91"
PASSWORD = "pim-password-c04e2d"
TOKEN = "magento-token-5b8e66"
STAGING_PASSWORD = "staging-password-e91d07"
SECRETS = (SECRET, PASSWORD, TOKEN, STAGING_PASSWORD)


@pytest.fixture
def fakes() -> Iterator[tuple[FakePim, FakeMagento]]:
    with FakeMagento(token=TOKEN) as magento:
        yield FakePim(products=16, secret=SECRET, password=PASSWORD), magento


def wired_to(pim: FakePim, magento: FakeMagento) -> type[App]:
    """The CLI's App, talking to the fakes in-process and never waiting between retries."""

    class Wired(App):
        def __init__(self, config: Config) -> None:
            super().__init__(
                config,
                pim_transport=httpx.MockTransport(pim),
                magento_transport=httpx.MockTransport(magento),
                sleep=lambda _seconds: None,
            )

    return Wired


def test_no_secret_in_output_logs_or_staging_whatever_fails(fakes, tmp_path, caplog):
    pim, magento = fakes
    staging = tmp_path / "staging.db"
    env = {
        "PIMSYNC_PIM__BASE_URL": "http://pim.test",
        "PIMSYNC_PIM__CLIENT_ID": "pimsync",
        "PIMSYNC_PIM__SECRET": SECRET,
        "PIMSYNC_PIM__USERNAME": "pimsync",
        "PIMSYNC_PIM__PASSWORD": PASSWORD,
        "PIMSYNC_PIM__MAX_ATTEMPTS": "3",
        "PIMSYNC_MAGENTO__BASE_URL": "http://magento.test",
        "PIMSYNC_MAGENTO__TOKEN": TOKEN,
        "PIMSYNC_MAGENTO__MAX_ATTEMPTS": "2",
        "PIMSYNC_STAGING__URL": f"sqlite:///{staging}",
    }
    results: list[Result] = []

    def run(*args: str, **extra: str) -> Result:
        with patch.object(base, "App", wired_to(pim, magento)):
            result = CliRunner().invoke(cli, list(args), env={**env, **extra})
        results.append(result)
        return result

    caplog.set_level(logging.DEBUG)
    assert run("import:full", "--json").exit_code == 0  # the secrets work
    assert run("create", "--json").exit_code == 0
    pim.clock.advance(600)
    pim.update_product(2, enabled=False)
    pim.fail_next(3, 503, path_prefix="/api/rest/v1/products-uuid")  # all 3 attempts
    assert run("import:incremental").exit_code == 4
    assert run("import:full", PIMSYNC_PIM__PASSWORD="wrong-" + PASSWORD).exit_code == 4
    assert run("import:incremental", "--json").exit_code == 0
    magento.revoke_token()
    assert run("create").exit_code == 4
    magento.restore_token()
    unreachable = f"postgresql+psycopg://pimsync:{STAGING_PASSWORD}@127.0.0.1:1/pimsync"
    assert run("import:full", PIMSYNC_STAGING__URL=unreachable).exit_code == 5

    said = "\n".join(r.output + r.stderr for r in results) + caplog.text
    assert "Error: " in said  # the failures did speak
    stored = b"".join(p.read_bytes() for p in Path(tmp_path).glob("staging.db*"))
    assert stored  # and the database was written
    for secret in SECRETS:
        assert secret not in said, secret
        assert secret.encode() not in stored, secret
