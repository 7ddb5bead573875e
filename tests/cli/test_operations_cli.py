"""The operating commands through CliRunner: `--report`/`--metrics`, skip/unskip, deletions
from a config file, and `pimsync stop`.

The mocks are served on loopback, as for a real run; staging is SQLite (both backends are
covered by tests/integration/test_operations.py, which drives the same library calls).
Real processes (overlapping runs, SIGKILL, SIGTERM, JSON logs) are in
tests/cli/test_operations_processes.py.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from pimsync.app import App
from pimsync.cli import cli
from pimsync.lock import RunLock, current_holder
from pimsync.staging.tables import sync_lock, sync_runs
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from pimsync.testing.server import serve
from tests.conftest import PIM_ENV, make_config

PRODUCTS = 24


@pytest.fixture
def pim() -> FakePim:
    return FakePim(products=PRODUCTS)


@pytest.fixture
def magento() -> Iterator[FakeMagento]:
    with FakeMagento() as fake:
        yield fake


@pytest.fixture
def staging(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'staging.db'}"


def make_env(staging: str, pim_url: str, magento_url: str) -> dict[str, str]:
    return {
        **PIM_ENV,
        "PIMSYNC_PIM__BASE_URL": pim_url,
        "PIMSYNC_STAGING__URL": staging,
        "PIMSYNC_MAGENTO__BASE_URL": magento_url,
        "PIMSYNC_MAGENTO__TOKEN": "magento-token",
    }


@pytest.fixture
def env(staging: str, pim: FakePim, magento: FakeMagento) -> Iterator[dict[str, str]]:
    with serve(pim) as pim_url, serve(magento) as magento_url:
        yield make_env(staging, pim_url, magento_url)


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def sku(pim: FakePim, index: int) -> str:
    return str(pim.product(index)["values"]["sku"][0]["data"])


def simple_skus(pim: FakePim) -> list[str]:
    return [sku(pim, i) for i in range(PRODUCTS) if not pim.product(i).get("parent")]


def name(pim: FakePim, index: int) -> str:
    names = pim.product(index)["values"].get("name", [])
    return next((str(v["data"]) for v in names if v["locale"] == "en_US"), "")


def status_in(magento: FakeMagento, code: str) -> int:
    """1 enabled, 2 disabled."""
    product = magento.product(code)
    assert product is not None, code
    return int(product["status"])


def open_app(staging: str) -> App:
    return App(make_config(staging))


# -- --report and --metrics ------------------------------------------------------------------

METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
HELP = re.compile(rf"# HELP ({METRIC_NAME}) \S.*")
TYPE = re.compile(rf"# TYPE ({METRIC_NAME}) (counter|gauge|histogram|summary|untyped)")
SAMPLE = re.compile(
    rf"({METRIC_NAME})(?:\{{({LABEL}(?:,{LABEL})*)\}})? "
    r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|NaN|[-+]Inf)"
)


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text exposition (as node_exporter's textfile collector reads it): HELP and
    TYPE before a metric's samples, one sample per line, and OpenMetrics' closing `# EOF`."""
    assert text.endswith("# EOF\n")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    typed: set[str] = set()
    for line in text.splitlines()[:-1]:
        if line.startswith("# HELP "):
            assert HELP.fullmatch(line), line
        elif line.startswith("# TYPE "):
            match = TYPE.fullmatch(line)
            assert match, line
            typed.add(match[1])
        else:
            match = SAMPLE.fullmatch(line)
            assert match, line
            assert match[1] in typed, f"{match[1]} has no # TYPE before its samples"
            labels = frozenset(
                re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match[2] or "")
            )
            key = (match[1], labels)
            assert key not in samples, f"duplicate sample {line}"
            samples[key] = float(match[3])
    return samples


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def quarantining(pim: FakePim, bad_uuid: str) -> Callable[[httpx.Request], httpx.Response]:
    """The PIM, with one product whose values fail validation (it is quarantined)."""

    def handler(request: httpx.Request) -> httpx.Response:
        response = pim(request)
        if request.url.path.endswith("/products-uuid") and response.status_code == 200:
            body = orjson.loads(response.content)
            for item in body["_embedded"]["items"]:
                if item["uuid"] == bad_uuid:
                    item["values"]["name"] = "not a list of values"
            return httpx.Response(200, json=body, headers=response.headers)
        return response

    return handler


def test_report_and_metrics_of_a_quarantine_a_failure_and_a_success(
    staging: str, pim: FakePim, magento: FakeMagento, tmp_path: Path
):
    report, metrics = tmp_path / "report.json", tmp_path / "pimsync.prom"
    summaries = ["--report", str(report), "--metrics", str(metrics)]
    with (
        serve(quarantining(pim, pim.catalog.uuid(5))) as pim_url,
        serve(magento) as magento_url,
    ):
        env = make_env(staging, pim_url, magento_url)

        imported = invoke([*summaries, "import:full"], env)
        assert imported.exit_code == 1
        summary = orjson.loads(report.read_text())
        assert summary["command"] == "import:full"
        assert summary["exit_code"] == 1 and summary["error"] is None
        assert 0 < summary["duration_seconds"] < 120
        assert summary["run"]["status"] == "success"
        products = summary["run"]["feeds"]["products"]
        assert products["quarantined"] == 1 and products["new"] == products["fetched"] - 1
        samples = parse_metrics(metrics.read_text())
        assert metric(samples, "pimsync_run_exit_code", command="import:full") == 1
        assert (
            metric(
                samples,
                "pimsync_items",
                command="import:full",
                feed="products",
                outcome="quarantined",
            )
            == 1
        )

        refused = invoke(
            [*summaries, "create"], {**env, "PIMSYNC_MAGENTO__TOKEN": "wrong-token-31"}
        )
        assert refused.exit_code == 4
        summary = orjson.loads(report.read_text())
        assert summary["command"] == "create" and summary["exit_code"] == 4
        assert summary["error"].startswith("Magento answered 401")
        assert summary["run"] is None
        samples = parse_metrics(metrics.read_text())
        assert metric(samples, "pimsync_run_exit_code", command="create") == 4
        assert not any(name == "pimsync_items" for name, _labels in samples)
        assert "wrong-token-31" not in report.read_text() + metrics.read_text()

        pushed = invoke([*summaries, "create"], env)
        assert pushed.exit_code == 0, pushed.output
        summary = orjson.loads(report.read_text())
        assert summary["exit_code"] == 0 and summary["error"] is None
        created = summary["run"]["feeds"]["products"]["created"]
        assert created == len(magento.products) - summary["run"]["feeds"]["variants"]["created"]
        samples = parse_metrics(metrics.read_text())
        assert metric(samples, "pimsync_run_exit_code", command="create") == 0
        labels = {"command": "create", "feed": "products"}
        assert metric(samples, "pimsync_items", outcome="created", **labels) == created
        assert metric(samples, "pimsync_feed_duration_seconds", **labels) >= 0
    assert oct(report.stat().st_mode & 0o777) == "0o644"  # the collector runs as another user


@pytest.mark.parametrize(
    "where",
    [
        "directory",
        "missing parent",
    ],
)
def test_an_unwritable_report_path_exits_2_before_running(
    where: str, env: dict[str, str], staging: str, tmp_path: Path
):
    path = tmp_path if where == "directory" else tmp_path / "missing" / "report.json"
    result = invoke(["--report", str(path), "import:full", "--categories"], env)
    assert result.exit_code == 2
    assert "--report" in result.stderr
    assert not Path(staging.removeprefix("sqlite:///")).exists()  # nothing ran


def test_verbose_logs_the_run_on_stderr_and_the_default_only_problems(env: dict[str, str]):
    quiet = invoke(["import:full", "--categories"], env)
    assert quiet.exit_code == 0 and quiet.stderr == ""
    verbose = invoke(["-v", "import:incremental", "--feed", "categories"], env)
    assert verbose.exit_code == 0
    lines = verbose.stderr.splitlines()
    assert [line.split(" run ")[0] for line in lines] == [
        "pimsync: INFO import:incremental",
        "pimsync: INFO import:incremental",
    ]
    assert lines[-1].endswith("categories fetched 0 new 0 changed 0 quarantined 0 deleted 0")


# -- skip and unskip -------------------------------------------------------------------------


def test_skip_and_unskip_through_the_cli(
    env: dict[str, str], pim: FakePim, magento: FakeMagento, tmp_path: Path
):
    assert invoke(["import:full"], env).exit_code == 0
    first, second, third, *others = simple_skus(pim)
    listed = tmp_path / "discontinued.txt"
    listed.write_text(f"# discontinued in March\n{first}\n\n   {second}   # and its twin\n\n")
    result = invoke(["skip", "--from-file", str(listed), "--json"], env)
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == {"skipped": True, "changed": 2, "not_found": []}

    index = next(i for i in range(PRODUCTS) if sku(pim, i) == third)
    text = name(pim, index).upper()  # a substring of the name, in another case
    matching = [sku(pim, i) for i in range(PRODUCTS) if text.lower() in name(pim, i).lower()]
    result = invoke(["skip", "--search", text, "--feed", "products"], env)
    assert result.exit_code == 0
    assert result.stdout == f"{len(matching)} item(s) skipped\n"

    unknown = invoke(["skip", "NO-SUCH-SKU", first, "NOPE-2", "--json"], env)
    assert unknown.exit_code == 2
    assert orjson.loads(unknown.stdout) == {
        "skipped": True,
        "changed": 0,  # already skipped
        "not_found": ["NO-SUCH-SKU", "NOPE-2"],
    }
    text_mode = invoke(["unskip", "NO-SUCH-SKU"], env)
    assert text_mode.exit_code == 2
    assert text_mode.stderr == "not found: NO-SUCH-SKU\n"
    nothing = invoke(["skip"], env)
    assert nothing.exit_code == 2
    assert nothing.stderr.startswith("Error: name items to (un)skip")

    assert invoke(["create"], env).exit_code == 0
    skipped = {first, second, *matching}
    for code in skipped:
        assert magento.product(code) is None, code
    for code in set(others) - skipped:
        assert magento.product(code) is not None, code

    result = invoke(["unskip", first, second, *matching, "--json"], env)
    assert orjson.loads(result.stdout) == {
        "skipped": False,
        "changed": len(skipped),
        "not_found": [],
    }
    again = invoke(["create", "--json"], env)
    assert again.exit_code == 0
    assert orjson.loads(again.stdout)["feeds"]["products"]["created"] == len(skipped)
    for code in skipped:
        assert magento.product(code) is not None, code


# -- deletions -------------------------------------------------------------------------------


def test_deletions_from_a_config_file_disable_and_respect_the_threshold(
    env: dict[str, str], pim: FakePim, magento: FakeMagento, tmp_path: Path
):
    config = tmp_path / "pimsync.toml"
    config.write_text('[sync]\ndeletion_threshold = 0.1\ndeletions = { products = "disable" }\n')
    pimsync = ["--config", str(config)]
    assert invoke([*pimsync, "import:full"], env).exit_code == 0
    assert invoke([*pimsync, "create"], env).exit_code == 0
    simple = [i for i in range(PRODUCTS) if not pim.product(i).get("parent")]

    gone = sku(pim, simple[0])
    pim.delete_product(simple[0])
    imported = invoke([*pimsync, "import:full", "--products", "--json"], env)
    assert orjson.loads(imported.stdout)["feeds"]["products"]["deleted_in_pim"] == 1
    result = invoke([*pimsync, "create", "--json"], env)
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["feeds"]["products"]["deleted"] == 1
    assert status_in(magento, gone) == 2  # disabled, not deleted

    doomed = [sku(pim, i) for i in simple[1:4]]
    for index in simple[1:4]:
        pim.delete_product(index)
    invoke([*pimsync, "import:full", "--products"], env)
    refused = invoke([*pimsync, "create"], env)
    assert refused.exit_code == 1
    assert re.search(
        r"^products: 3 deletion\(s\) refused: that is [\d.]+% of the \d+ item\(s\) Magento has, "
        r"over \[sync\] deletion_threshold \(10%\); check the PIM, then raise the threshold ",
        refused.stdout,
        re.MULTILINE,
    )
    assert all(status_in(magento, code) == 1 for code in doomed)

    kept = invoke([*pimsync, "create", "--no-deletions"], env)
    assert kept.exit_code == 0, kept.output
    assert "refused" not in kept.stdout
    assert all(status_in(magento, code) == 1 for code in doomed)


def test_the_refusal_counts_what_magento_really_has(
    env: dict[str, str], pim: FakePim, magento: FakeMagento, tmp_path: Path
):
    config = tmp_path / "pimsync.toml"
    config.write_text('[sync]\ndeletion_threshold = 0.0\ndeletions = { products = "delete" }\n')
    pimsync = ["--config", str(config)]
    invoke([*pimsync, "import:full"], env)
    assert invoke([*pimsync, "create"], env).exit_code == 0
    variants = sum(1 for i in range(PRODUCTS) if pim.product(i).get("parent"))
    has = len(magento.products) - variants  # simple products and configurables
    pim.delete_product(next(i for i in range(PRODUCTS) if not pim.product(i).get("parent")))
    invoke([*pimsync, "import:full", "--products"], env)
    refused = invoke([*pimsync, "create"], env)
    assert refused.exit_code == 1
    assert f"that is {1 / has:.1%} of the {has} item(s) Magento has" in refused.stdout


# -- stop ------------------------------------------------------------------------------------


def test_stop_with_nothing_running(env: dict[str, str], staging: str):
    result = invoke(["stop"], env)
    assert result.exit_code == 0
    assert result.stdout == "no run in progress\n"
    result = invoke(["stop", "--wait", "5", "--json"], env)
    assert result.exit_code == 0
    assert orjson.loads(result.stdout) == {
        "running": False,
        "kind": None,
        "run_id": None,
        "host": None,
        "pid": None,
        "looked_dead": False,
        "stopped": True,
    }
    app = open_app(staging)
    try:
        with app.engine().connect() as connection:  # stop records no run, leaves no lock
            assert connection.execute(select(sync_runs)).all() == []
            assert connection.execute(select(sync_lock)).all() == []
    finally:
        app.close()


def test_stop_wait_exits_3_when_the_run_does_not_stop_in_time(env: dict[str, str], staging: str):
    app = open_app(staging)
    lock = RunLock(app.engine(), "import:full")  # no heartbeat: it never hears the request
    lock.acquire()
    try:
        result = invoke(["stop", "--wait", "0.3", "--json"], env)
        assert result.exit_code == 3
        assert orjson.loads(result.stdout) == {
            "running": True,
            "kind": "import:full",
            "run_id": None,
            "host": socket.gethostname(),
            "pid": lock.pid,
            "looked_dead": False,
            "stopped": False,
        }
        assert result.stderr.startswith("Error: the run did not stop within 0.3 s: import:full on")
        holder = current_holder(app.engine())
        assert holder is not None and holder.stop_requested_at is not None
    finally:
        lock.release()
        app.close()


def test_stop_wait_does_not_call_a_live_run_dead(env: dict[str, str], staging: str):
    app = open_app(staging)
    lock = RunLock(app.engine(), "create", lease_seconds=0.2)
    lock.acquire()
    lock.start_heartbeat()

    def run_until_stopped() -> None:
        while not lock.stop_requested:
            time.sleep(0.01)
        time.sleep(0.5)  # its current batch, longer than the lease, with the heartbeat on
        lock.release()

    runner = threading.Thread(target=run_until_stopped)
    runner.start()
    try:
        result = invoke(["stop", "--wait", "30"], env)
    finally:
        runner.join(timeout=30)
        app.close()
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "it stopped"
    assert "looks dead" not in result.stdout
