"""Bad configuration and bad arguments, through the real command line: exit 2, an `Error:` line
(plus one line per field problem), never a traceback, never exit 70.

The hand-written cases name what each must say; the fuzz tests throw generated TOML documents
(known and unknown sections, keys and values of every TOML type) and raw bytes at
`pimsync --config FILE import:full` with nothing reachable, and accept only exit 2 for an
invalid configuration, and 2, 4 or 5 for a valid one (a missing setting, the unreachable PIM,
an unusable staging database).

Not repeated here (tests/cli/test_cli.py, tests/unit/test_config.py): two field errors in one
file, invalid TOML, a missing [pim] base_url, an unknown --feed, missing Magento settings, an
unknown env section, an unusable staging path.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimsync.app import App
from pimsync.cli import base, cli
from pimsync.config import Config, load_config
from pimsync.errors import ConfigError

UNREACHABLE = "http://127.0.0.1:1"  # nothing listens on port 1: connections are refused at once


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env or {}, catch_exceptions=False)


def assert_usage_error(result: Result, expected: str) -> None:
    """Exit 2, one `Error:` line on stderr that says `expected` (or a problem line does)."""
    assert "Traceback" not in result.output
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert sum(line.startswith("Error: ") for line in lines) == 1, result.stderr
    assert any(expected in line for line in lines), result.stderr


@pytest.fixture
def config_file(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "pimsync.toml"


BASE = f'[pim]\nbase_url = "{UNREACHABLE}"\n'
FILES: dict[str, tuple[str, str]] = {
    "unknown section": ("[pimm]\nbase_url = 'x'\n", "pimm: unknown key"),
    "unknown key": ("[magento]\ntokn = 'x'\n", "  [magento] tokn: unknown key"),
    "float where an integer belongs": (
        "[pim]\npage_size = 1.5\n",
        "  [pim] page_size: Input should be a valid integer, got a number with a fractional part",
    ),
    "a section given as a string": ('pim = "http://pim"\n', "  pim: Input should be a valid"),
    "a list where a map belongs": (
        "[mapping]\nlocales = ['en_US']\n",
        "  [mapping] locales: Input should be a valid dictionary",
    ),
    "a negative overlap": ("[sync]\noverlap_seconds = -5\n", "  [sync] overlap_seconds: Input"),
    "a URL that is not http": (
        "[pim]\nbase_url = 'ftp://pim.example.com'\n",
        "  [pim] base_url: URL scheme should be 'http' or 'https'",
    ),
    "a URL without a host": ("[magento]\nbase_url = 'http://'\n", "  [magento] base_url: Input"),
    "a staging URL that is no URL": (
        BASE + "[staging]\nurl = 'nonsense'\n",
        "Error: [staging] url 'nonsense' is not a database URL",
    ),
    "a staging URL without its driver": (
        BASE + "[staging]\nurl = 'mysql://u@127.0.0.1/db'\n",
        "Error: [staging] url: unsupported database URL",
    ),
    "a CA bundle that does not exist": (
        BASE + "ca_bundle = '/nonexistent/ca.pem'\n",
        "Error: [pim] ca_bundle: cannot load /nonexistent/ca.pem: No such file or directory",
    ),
    "no [pim] section at all": (
        "[magento]\nconcurrency = 2\n",
        "  [pim] base_url is required (or set PIMSYNC_PIM__BASE_URL)",
    ),
    "an empty file": ("", "  [pim] base_url is required"),
}


@pytest.mark.parametrize("case", FILES)
def test_a_bad_config_file_is_one_error_line_and_exit_2(config_file, case):
    content, expected = FILES[case]
    config_file.write_text(content)
    result = invoke(["--config", str(config_file), "import:full"])
    assert_usage_error(result, expected)


ENVIRONMENTS: dict[str, tuple[dict[str, str], str]] = {
    "a word where a number belongs": (
        {"PIMSYNC_PIM__MAX_ATTEMPTS": "lots"},
        "  [pim] max_attempts: Input should be a valid integer",
    ),
    "a broken JSON list": ({"PIMSYNC_SYNC__REINDEX_COMMAND": "[1,"}, "Error: invalid config"),
    "an unknown key": ({"PIMSYNC_MAGENTO__TOKN": "x"}, "  [magento] tokn: unknown key"),
}


@pytest.mark.parametrize("case", ENVIRONMENTS)
def test_a_bad_environment_is_one_error_line_and_exit_2(case):
    env, expected = ENVIRONMENTS[case]
    result = invoke(["import:full"], {"PIMSYNC_PIM__BASE_URL": UNREACHABLE, **env})
    assert_usage_error(result, expected)


def test_a_directory_given_as_the_config_file(tmp_path):
    result = invoke(["--config", str(tmp_path), "import:full"])
    assert_usage_error(result, "is a directory")


def test_a_config_path_through_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke(["--config", str(blocker / "pimsync.toml"), "import:full"])
    assert_usage_error(result, f"Error: cannot read config file {blocker}/pimsync.toml")


def test_a_dangling_symlink_as_the_config_file(tmp_path):
    link = tmp_path / "pimsync.toml"
    link.symlink_to(tmp_path / "gone.toml")
    result = invoke(["--config", str(link), "import:full"])
    assert_usage_error(result, "does not exist")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_config_file(config_file):
    config_file.write_text(BASE)
    config_file.chmod(0)
    result = invoke(["--config", str(config_file), "import:full"])
    assert_usage_error(result, "Permission denied")


def test_a_config_file_that_is_not_utf8(config_file):
    config_file.write_bytes(b'[pim]\nbase_url = "http://caf\xe9"\n')
    result = invoke(["--config", str(config_file), "import:full"])
    assert_usage_error(result, "is not valid TOML")


ARGUMENTS: dict[str, tuple[list[str], str]] = {
    "a zero limit": (["create", "--limit", "0"], "Invalid value for '--limit'"),
    "a word as the limit": (["create", "--limit", "many"], "Invalid value for '--limit'"),
    "resync without a feed": (["resync"], "--feed"),
    "--feed without a value": (["import:incremental", "--feed"], "requires an argument"),
    "an unknown option": (["import:full", "--frobnicate"], "No such option"),
    "an unknown command": (["import:fulll"], "No such command 'import:fulll'"),
    "a staging URL that is no URL": (
        ["--staging-url", "nonsense", "import:full"],
        "Error: [staging] url 'nonsense' is not a database URL",
    ),
    "a mock error rate above 1": (["mock", "pim", "--error-rate", "2"], "--error-rate must"),
    "a port out of range": (["mock", "magento", "--port", "70000"], "Invalid value for '--port'"),
}


@pytest.mark.parametrize("case", ARGUMENTS)
def test_bad_arguments_are_one_error_line_and_exit_2(case):
    args, expected = ARGUMENTS[case]
    result = invoke(args, {"PIMSYNC_PIM__BASE_URL": UNREACHABLE})
    assert_usage_error(result, expected)


# -- the fuzz tests -------------------------------------------------------------------------

SECTIONS = {
    name: list(type(getattr(Config(), name)).model_fields)
    for name in Config.model_fields
    if name != "source_path"
}
names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),  # TOML has nan and inf
    names,
    st.sampled_from(
        [
            UNREACHABLE,
            "https://127.0.0.1:1/pim",
            "ftp://x",
            "http://",
            "",
            "UTC",
            "Europe/Paris",
            "Mars/Olympus",
            "/nonexistent/ca.pem",
            "sqlite:///:memory:",
            "sqlite:////nonexistent/dir/s.db",
            "postgresql://pimsync@127.0.0.1:1/x",
            "products-uuid",
            "bulk",
            "sync",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)


DEFAULTS = Config().model_dump(mode="json", exclude={"source_path"})


def plausible(section: str, key: str) -> st.SearchStrategy[Any]:
    """Values of the right type for a known key, around and across its bounds."""
    default = DEFAULTS[section].get(key)
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-2, 2 * max(default, 10))
    if isinstance(default, float):
        return st.floats(-1.0, 2 * max(default, 10.0))
    return scalars if default is None else st.just(default)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A configuration: mostly the real sections and keys, sometimes unknown ones."""
    doc: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)) | names, max_size=4)):
        known = SECTIONS.get(section)
        if known is None:
            doc[section] = draw(st.dictionaries(names, values, max_size=3))
            continue
        keys = draw(st.lists(st.sampled_from(known) | names, max_size=4, unique=True))
        doc[section] = {key: draw(plausible(section, key) | values) for key in keys}
    if draw(st.booleans()):
        doc.setdefault("pim", {})["base_url"] = UNREACHABLE
    if draw(st.integers(0, 9)) == 0:
        doc[draw(names)] = draw(scalars)  # a top-level key that is no section
    return doc


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON escapes are TOML basic escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    pairs = (f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in value.items())
    return "{" + ", ".join(pairs) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    """TOML text for `doc`: scalar keys first, then one table per section."""
    lines = [
        f"{json.dumps(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)
    ]
    for section, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{json.dumps(section, ensure_ascii=False)}]")
            lines += [
                f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in table.items()
            ]
    return "\n".join(lines) + "\n"


class NoWaitApp(App):
    """The CLI's App, minus the real sleeps between retries of the unreachable PIM."""

    def __init__(self, config: Config) -> None:
        super().__init__(config, sleep=lambda _seconds: None)


FUZZ = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same examples every run: a fuzz test that cannot be flaky
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def run_fuzzed(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    try:
        load_config(path, {})
        valid = True
    except ConfigError:
        valid = False
    with patch.object(base, "App", NoWaitApp):
        result = CliRunner().invoke(cli, ["--config", str(path), "import:full"], env={})
    assert "Traceback" not in result.output, result.output
    assert result.exit_code != 70, result.output
    assert result.exit_code in ({2, 4, 5} if valid else {2}), (content, result.output)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output


@FUZZ
@given(doc=documents())
def test_fuzzed_config_documents_never_crash(tmp_path, monkeypatch, doc):
    monkeypatch.chdir(tmp_path)  # a relative staging path lands in the test's own folder
    run_fuzzed(tmp_path / "pimsync.toml", toml_document(doc).encode())


@settings(FUZZ, max_examples=40)
@given(text=st.text(max_size=200))
def test_fuzzed_config_text_never_crashes(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    run_fuzzed(tmp_path / "pimsync.toml", text.encode("utf-8", "surrogatepass"))


@settings(FUZZ, max_examples=20)
@given(content=st.binary(max_size=200))
def test_fuzzed_config_bytes_never_crash(tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    run_fuzzed(tmp_path / "pimsync.toml", content)
