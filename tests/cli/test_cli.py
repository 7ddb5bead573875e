"""The command line: exit codes, messages and output shapes, through CliRunner and subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from pimsync.cli import cli
from pimsync.testing.fake_pim import FakePim
from pimsync.testing.server import serve
from tests.conftest import PIM_ENV


@pytest.fixture
def pim_url() -> Iterator[str]:
    with serve(FakePim(products=60)) as url:
        yield url


@pytest.fixture
def env(pim_url: str, staging_url: str) -> dict[str, str]:
    return {**PIM_ENV, "PIMSYNC_PIM__BASE_URL": pim_url, "PIMSYNC_STAGING__URL": staging_url}


def invoke(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def all_commands() -> list[list[str]]:
    commands = []
    for name, command in cli.commands.items():
        subcommands = getattr(command, "commands", None)
        if subcommands:
            commands += [[name, sub] for sub in subcommands]
        commands.append([name])
    return commands


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_has_help_with_h(path: list[str]):
    result = invoke([*path, "-h"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


@pytest.mark.parametrize("name", [n for n in cli.commands if n not in ("db", "mock")])
def test_every_command_help_carries_an_example(name: str):
    result = invoke([name, "--help"])
    assert f"pimsync {name}" in result.output


def test_import_full_json_summary(env: dict[str, str]):
    result = invoke(["import:full", "--json"], env)
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["status"] == "success"
    assert report["exit_code"] == 0
    assert list(report["feeds"]) == ["attributes", "categories", "products", "assets"]
    products = report["feeds"]["products"]
    assert products["fetched"] == products["new"] > 60
    assert set(products) >= {"fetched", "new", "changed", "unchanged", "quarantined"}


def test_import_full_feed_flags_and_table(env: dict[str, str]):
    result = invoke(["import:full", "--categories"], env)
    assert result.exit_code == 0
    assert "categories" in result.stdout
    assert "products" not in result.stdout
    again = invoke(["import:incremental", "--feed", "categories", "--json"], env)
    feeds = orjson.loads(again.stdout)["feeds"]
    assert feeds["categories"]["mode"] == "incremental"
    assert feeds["categories"]["new"] == 0


def test_broken_config_is_one_message_per_problem_and_exit_2(tmp_path: Path):
    config = tmp_path / "pimsync.toml"
    config.write_text('[pim]\nbase_url = "nope"\n[magento]\nconcurrency = "many"\n')
    result = invoke(["--config", str(config), "import:full"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: invalid configuration")
    assert lines[1:] == [
        "  [pim] base_url: Input should be a valid URL, relative URL without a base",
        "  [magento] concurrency: Input should be a valid integer, "
        "unable to parse string as an integer",
    ]
    assert "Traceback" not in result.output


def test_invalid_toml_exits_2(tmp_path: Path):
    config = tmp_path / "pimsync.toml"
    config.write_text("[pim\n")
    result = invoke(["--config", str(config), "import:full"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {config} is not valid TOML")


def test_missing_base_url_names_the_setting(tmp_path: Path):
    result = invoke(["--staging-url", f"sqlite:///{tmp_path}/s.db", "import:full"])
    assert result.exit_code == 2
    assert "[pim] base_url is required (or set PIMSYNC_PIM__BASE_URL)" in result.stderr


def test_unknown_feed_is_a_usage_error(env: dict[str, str]):
    result = invoke(["import:incremental", "--feed", "prices"], env)
    assert result.exit_code == 2
    assert "'prices' is not one of" in result.stderr


def test_pim_refusing_credentials_exits_4_and_hides_the_secret(env: dict[str, str]):
    result = invoke(["import:full"], {**env, "PIMSYNC_PIM__PASSWORD": "wrong-password-123"})
    assert result.exit_code == 4
    assert result.stderr.startswith("Error: import:full stopped: the PIM refused the credentials")
    assert "wrong-password-123" not in result.output


def test_unreachable_pim_exits_4(env: dict[str, str]):
    env = {**env, "PIMSYNC_PIM__BASE_URL": "http://127.0.0.1:9", "PIMSYNC_PIM__MAX_ATTEMPTS": "1"}
    result = invoke(["import:full"], env)
    assert result.exit_code == 4
    assert "check [pim] base_url" in result.stderr


def test_unusable_staging_database_exits_5(env: dict[str, str], tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke(["import:full"], {**env, "PIMSYNC_STAGING__URL": f"sqlite:///{blocker}/x.db"})
    assert result.exit_code == 5
    assert result.stderr.startswith("Error: cannot create the staging database")


def test_db_upgrade(env: dict[str, str]):
    result = invoke(["db", "upgrade"], env)
    assert result.exit_code == 0
    assert result.stdout == "staging database at revision 0004\n"


def fail_in_db_upgrade(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    def current_revision(engine: object) -> str:
        raise error

    monkeypatch.setattr("pimsync.staging.database.current_revision", current_revision)


def test_a_bug_is_one_line_and_exit_70_with_its_traceback_only_under_debug(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    fail_in_db_upgrade(monkeypatch, RuntimeError("boom"))
    result = invoke(["db", "upgrade"], env)
    assert result.exit_code == 70
    assert result.stderr.splitlines()[0] == "Error: internal error: RuntimeError: boom"
    assert "this is a bug; run again with --debug" in result.stderr
    assert "Traceback" not in result.stderr
    debug = invoke(["--debug", "db", "upgrade"], env)
    assert debug.exit_code == 70
    assert "Traceback (most recent call last)" in debug.stderr
    assert "in current_revision" in debug.stderr  # the frame that raised
    as_json = invoke(["--log-format", "json", "db", "upgrade"], env)
    record = orjson.loads(as_json.stderr.strip())
    assert (record["level"], record["exit_code"]) == ("error", 70)
    assert record["message"] == "internal error: RuntimeError: boom"


def test_ctrl_c_is_exit_130_and_keeps_what_was_committed(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    fail_in_db_upgrade(monkeypatch, KeyboardInterrupt())
    result = invoke(["db", "upgrade"], env)
    assert result.exit_code == 130
    assert result.stderr.splitlines()[0] == "Error: interrupted; work committed so far is kept"
    assert "Traceback" not in result.stderr


def test_version():
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("pimsync, version ")


def test_real_subprocess_with_env_only_and_python_m(pim_url: str, tmp_path: Path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIMSYNC_")},
        **PIM_ENV,
        "PIMSYNC_PIM__BASE_URL": pim_url,
        "PIMSYNC_STAGING__URL": f"sqlite:///{tmp_path / 'staging.db'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pimsync", "import:full", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress or chatter when stderr is not a terminal
    assert orjson.loads(done.stdout)["status"] == "success"
    assert oct((tmp_path / "staging.db").stat().st_mode & 0o777) == "0o600"


@pytest.fixture
def magento_env(env: dict[str, str]) -> Iterator[dict[str, str]]:
    from pimsync.testing.fake_magento import FakeMagento

    with FakeMagento() as magento, serve(magento) as url:
        yield {**env, "PIMSYNC_MAGENTO__BASE_URL": url, "PIMSYNC_MAGENTO__TOKEN": "magento-token"}


def test_create_then_nothing_to_do_then_resync(magento_env: dict[str, str]):
    assert invoke(["import:full", "--json"], magento_env).exit_code == 0
    first = invoke(["create", "--json"], magento_env)
    assert first.exit_code == 0, first.output
    report = orjson.loads(first.stdout)
    assert report["status"] == "success"
    assert list(report["feeds"]) == ["attributes", "categories", "products", "variants", "assets"]
    assert report["feeds"]["products"]["created"] > 0
    again = orjson.loads(invoke(["create", "--json"], magento_env).stdout)
    assert all(
        feed["created"] == feed["updated"] == feed["failed"] == 0
        for feed in again["feeds"].values()
    )
    resync = invoke(["resync", "--feed", "categories", "--no-reindex"], magento_env)
    assert resync.exit_code == 0
    assert "categories" in resync.stdout and "products" not in resync.stdout


def test_create_dry_run_prints_one_json_line_per_item(magento_env: dict[str, str]):
    invoke(["import:full", "--categories"], magento_env)
    result = invoke(["create", "--feed", "categories", "--dry-run"], magento_env)
    assert result.exit_code == 0
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 31
    assert {line["action"] for line in lines} <= {"create", "waits: parent category"} | {
        line["action"] for line in lines if line["action"].startswith("waits")
    }
    assert lines[0]["payload"]["all"]["name"]
    assert "dry run: nothing was sent" in result.stderr


def test_create_with_a_bad_magento_token_exits_4(magento_env: dict[str, str]):
    invoke(["import:full", "--categories"], magento_env)
    result = invoke(["create"], {**magento_env, "PIMSYNC_MAGENTO__TOKEN": "wrong-token-456"})
    assert result.exit_code == 4
    assert result.stderr.startswith("Error: Magento answered 401")
    assert "wrong-token-456" not in result.output


def test_create_without_magento_settings_exits_2(env: dict[str, str]):
    result = invoke(["create"], env)
    assert result.exit_code == 2
    assert "[magento] base_url is required" in result.stderr
    assert "[magento] token is required" in result.stderr


def test_reindex_command_runs_without_a_shell(magento_env: dict[str, str], tmp_path: Path):
    marker = tmp_path / "reindexed"
    command = orjson.dumps([sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ok')"])
    env = {**magento_env, "PIMSYNC_SYNC__REINDEX_COMMAND": command.decode()}
    invoke(["import:full", "--categories"], env)
    result = invoke(["create", "--feed", "categories"], env)
    assert result.exit_code == 0
    assert "reindex: ok" in result.stdout
    assert marker.read_text() == "ok"
    marker.unlink()
    skipped = invoke(["resync", "--feed", "categories", "--no-reindex"], env)
    assert skipped.exit_code == 0
    assert not marker.exists()


def test_turning_tls_verification_off_warns_loudly(env: dict[str, str]):
    result = invoke(
        ["import:full", "--categories"],
        {**env, "PIMSYNC_PIM__VERIFY_TLS": "false", "PIMSYNC_MAGENTO__VERIFY_TLS": "false"},
    )
    assert result.exit_code == 0, result.output
    assert "TLS certificate verification is OFF for [pim]" in result.stderr
    assert "[magento]" not in result.stderr  # no Magento configured: nothing to warn about
    quiet = invoke(["import:full", "--categories"], env)
    assert "TLS" not in quiet.stderr
