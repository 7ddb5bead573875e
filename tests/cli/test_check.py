"""`pimsync check`: output lines, --json, exit codes and secrets, against loopback mocks."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from click.testing import CliRunner

from pimsync.cli import cli
from pimsync.staging.database import HEAD_REVISION, open_engine, upgrade
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from pimsync.testing.server import serve

# The installed console script of the environment running the tests (`make test` may use a
# VENV other than .venv).
VENV_BIN = Path(sys.executable).parent
SECRETS = {
    "PIMSYNC_PIM__SECRET": "pim-secret-Qz81",
    "PIMSYNC_PIM__PASSWORD": "pim-password-Qz81",
    "PIMSYNC_MAGENTO__TOKEN": "magento-token-Qz81",
}
PG_PASSWORD = "pg-password-Qz81"
NAMES = [
    "configuration",
    "staging",
    "PIM credentials",
    "PIM read",
    "Magento token and permissions",
    "store views",
    "websites",
    "attribute sets",
]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """The mock PIM, the mock Magento, and a Magento whose token lacks Magento_Catalog::sets."""
    pim = FakePim(
        products=5, secret=SECRETS["PIMSYNC_PIM__SECRET"], password=SECRETS["PIMSYNC_PIM__PASSWORD"]
    )
    with FakeMagento(token=SECRETS["PIMSYNC_MAGENTO__TOKEN"]) as magento:

        def without_sets(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/attribute-sets/sets/list"):
                body = {
                    "message": "The consumer isn't authorized to access %resources.",
                    "parameters": {"resources": "Magento_Catalog::sets"},
                }
                return httpx.Response(401, json=body)
            return magento(request)

        with serve(pim) as pim_url, serve(magento) as magento_url, serve(without_sets) as acl_url:
            yield {"pim": pim_url, "magento": magento_url, "magento_without_sets": acl_url}


def migrate(url: str) -> str:
    engine = open_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def base_env(servers: dict[str, str], staging_url: str) -> dict[str, str]:
    return {
        "PIMSYNC_PIM__BASE_URL": servers["pim"],
        "PIMSYNC_PIM__CLIENT_ID": "pimsync",
        "PIMSYNC_PIM__USERNAME": "pimsync",
        "PIMSYNC_MAGENTO__BASE_URL": servers["magento"],
        "PIMSYNC_STAGING__URL": staging_url,
        **SECRETS,
    }


def invoke(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_no_secret(output: str, *extra: str) -> None:
    for secret in (*SECRETS.values(), PG_PASSWORD, *extra):
        assert secret not in output


def test_all_checks_pass(servers: dict[str, str], staging_url: str):
    result = invoke(["check"], base_env(servers, migrate(staging_url)))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"ok    {name}" for name in NAMES]
    assert lines[1].endswith(f"at revision {HEAD_REVISION}")
    assert result.stderr == ""
    assert_no_secret(result.output)


def test_json_is_a_list_of_name_ok_detail_setting(servers: dict[str, str], tmp_path: Path):
    env = base_env(servers, migrate(f"sqlite:///{tmp_path / 's.db'}"))
    result = invoke(["check", "--json"], {**env, "PIMSYNC_MAPPING__LOCALES": '{"en_US": "xx"}'})
    assert result.exit_code == 2
    checks = orjson.loads(result.stdout)
    assert [c["name"] for c in checks] == NAMES
    assert all(list(c) == ["name", "ok", "detail", "setting"] for c in checks)
    store_views = checks[5]
    assert store_views == {
        "name": "store views",
        "ok": False,
        "detail": "Magento has no store view 'xx' (it has default, fr, de)",
        "setting": "[mapping] locales or PIMSYNC_MAPPING__LOCALES",
    }
    assert [c["ok"] for c in checks] == [True] * 5 + [False, True, True]
    assert all(c["setting"] is None for c in checks if c["ok"])


def failing_env(case: str, servers: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = base_env(servers, migrate(f"sqlite:///{tmp_path / 's.db'}"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    changes: dict[str, dict[str, str]] = {
        "wrong PIM secret": {"PIMSYNC_PIM__SECRET": "wrong-secret-Qz81"},
        "wrong Magento token": {"PIMSYNC_MAGENTO__TOKEN": "wrong-token-Qz81"},
        "token without permission": {"PIMSYNC_MAGENTO__BASE_URL": servers["magento_without_sets"]},
        "unmapped store code": {"PIMSYNC_MAPPING__LOCALES": '{"en_US": "default", "fr_FR": "xx"}'},
        "unknown website": {"PIMSYNC_MAPPING__WEBSITES": '["base", "eu"]'},
        "unknown attribute set": {
            "PIMSYNC_MAPPING__ATTRIBUTE_SETS": '{"shoes": "Shoes"}',
            "PIMSYNC_MAPPING__CREATE_ATTRIBUTE_SETS": "false",
        },
        "staging not creatable": {"PIMSYNC_STAGING__URL": f"sqlite:///{blocker / 'new.db'}"},
        "staging unreachable": {
            "PIMSYNC_STAGING__URL": (
                f"postgresql+psycopg://pimsync:{PG_PASSWORD}@127.0.0.1:{closed_port()}/pimsync"
            )
        },
        "missing keys": {"PIMSYNC_PIM__SECRET": "", "PIMSYNC_MAGENTO__TOKEN": ""},
    }
    return {**env, **changes[case]}


# The first FAIL line; `*` stands for anything (a path, a port, a driver's message).
@pytest.mark.parametrize(
    ("case", "code", "line"),
    [
        (
            "wrong PIM secret",
            4,
            'FAIL  PIM credentials: the PIM refused the credentials (422 Parameter "client_id" '
            "is missing or does not match any client, or secret is invalid) (fix: [pim] "
            "client_id/secret/username/password or "
            "PIMSYNC_PIM__CLIENT_ID/SECRET/USERNAME/PASSWORD)",
        ),
        (
            "wrong Magento token",
            4,
            "FAIL  Magento token and permissions: Magento refused the token: 401 The consumer "
            "isn't authorized to access Magento_Catalog::products. (an integration token is "
            "accepted as Bearer only with oauth/consumer/enable_integration_as_bearer = 1 "
            "(Magento 2.4.4+)) (fix: [magento] token or PIMSYNC_MAGENTO__TOKEN)",
        ),
        (
            "token without permission",
            4,
            "FAIL  Magento token and permissions: the token lacks the ACL resource "
            "Magento_Catalog::sets (401 on attribute sets: The consumer isn't authorized to "
            "access Magento_Catalog::sets.) (fix: the API resources of the Magento integration "
            "or admin role behind [magento] token)",
        ),
        (
            "unmapped store code",
            2,
            "FAIL  store views: Magento has no store view 'xx' (it has default, fr, de) "
            "(fix: [mapping] locales or PIMSYNC_MAPPING__LOCALES)",
        ),
        (
            "unknown website",
            2,
            "FAIL  websites: Magento has no website 'eu' (it has base) "
            "(fix: [mapping] websites or PIMSYNC_MAPPING__WEBSITES)",
        ),
        (
            "unknown attribute set",
            2,
            "FAIL  attribute sets: Magento has no attribute set 'Shoes' and "
            "create_attribute_sets is false (fix: [mapping] attribute_sets or "
            "PIMSYNC_MAPPING__ATTRIBUTE_SETS, or [mapping] create_attribute_sets = true)",
        ),
        (
            "staging not creatable",
            5,
            "FAIL  staging: the SQLite file *new.db does not exist yet and * is not writable "
            "(fix: [staging] url, PIMSYNC_STAGING__URL or --staging-url)",
        ),
        (
            "staging unreachable",
            5,
            "FAIL  staging: cannot open postgresql+psycopg://pimsync:***@127.0.0.1:*"
            "(fix: [staging] url, PIMSYNC_STAGING__URL or --staging-url)",
        ),
        (
            "missing keys",
            2,
            "FAIL  configuration: missing [pim] secret, [magento] token (fix: [pim] secret or "
            "PIMSYNC_PIM__SECRET; [magento] token or PIMSYNC_MAGENTO__TOKEN)",
        ),
    ],
)
def test_each_failure_alone(
    case: str, code: int, line: str, servers: dict[str, str], tmp_path: Path
):
    result = invoke(["check"], failing_env(case, servers, tmp_path))
    assert result.exit_code == code, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == len(NAMES)
    failed = [x for x in lines if x.startswith("FAIL  ")]
    pattern = ".*".join(re.escape(part) for part in line.split("*"))
    assert re.fullmatch(pattern, failed[0]), failed[0]
    assert_no_secret(result.output, "wrong-secret-Qz81", "wrong-token-Qz81")


def test_missing_sqlite_file_is_not_created(servers: dict[str, str], tmp_path: Path):
    path = tmp_path / "not" / "yet" / "staging.db"
    result = invoke(["check"], base_env(servers, f"sqlite:///{path}"))
    assert result.exit_code == 0, result.output
    assert (
        f"ok    staging: the SQLite file {path} does not exist yet; the first run creates it"
        in (result.stdout)
    )
    assert not (tmp_path / "not").exists()


def test_invalid_config_is_the_usual_error(tmp_path: Path):
    config = tmp_path / "pimsync.toml"
    config.write_text('[pim]\nbase_url = "nope"\n[magento]\nconcurrency = "many"\n')
    result = invoke(["--config", str(config), "check", "--json"], {})
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "  [pim] base_url: Input should be a valid URL" in result.stderr
    assert "  [magento] concurrency: Input should be a valid integer" in result.stderr
    # Word for word what any other command says about the same file.
    assert result.stderr == invoke(["--config", str(config), "import:full"], {}).stderr


def test_real_subprocess_against_loopback_mocks(servers: dict[str, str], tmp_path: Path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIMSYNC_")},
        **base_env(servers, migrate(f"sqlite:///{tmp_path / 'staging.db'}")),
    }
    done = subprocess.run(
        [str(VENV_BIN / "pimsync"), "check"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(done.stdout.splitlines()) == len(NAMES)
    assert all(line.startswith("ok    ") for line in done.stdout.splitlines())
    assert done.stderr == ""
    assert_no_secret(done.stdout + done.stderr)
