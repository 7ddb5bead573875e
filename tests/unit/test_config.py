from __future__ import annotations

from pathlib import Path

import pytest

from pimsync.config import load_config
from pimsync.errors import ConfigError


def test_env_alone_configures_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(
        None,
        {
            "PIMSYNC_PIM__BASE_URL": "https://pim.example.com",
            "PIMSYNC_PIM__SECRET": "s3cret",
            "PIMSYNC_MAGENTO__BASE_URL": "https://shop.example.com",
            "PIMSYNC_MAGENTO__TOKEN": "tok",
            "PIMSYNC_STAGING__URL": "sqlite:///x.db",
            "PIMSYNC_SYNC__REINDEX_COMMAND": '["bin/magento", "indexer:reindex"]',
        },
    )
    assert str(config.pim.base_url) == "https://pim.example.com/"
    assert config.pim.secret is not None and config.pim.secret.get_secret_value() == "s3cret"
    assert config.magento.token is not None
    assert config.staging.url == "sqlite:///x.db"
    assert config.sync.reindex_command == ["bin/magento", "indexer:reindex"]


def test_precedence_cli_over_env_over_file(tmp_path: Path):
    path = tmp_path / "pimsync.toml"
    path.write_text(
        '[pim]\nbase_url = "http://file"\nclient_id = "file"\nusername = "file"\n'
        "[magento]\nconcurrency = 3\n"
    )
    config = load_config(
        path,
        {"PIMSYNC_PIM__CLIENT_ID": "env", "PIMSYNC_PIM__USERNAME": "env"},
        {"pim": {"username": "cli"}},
    )
    assert str(config.pim.base_url) == "http://file/"
    assert config.pim.client_id == "env"
    assert config.pim.username == "cli"
    assert config.magento.concurrency == 3


def test_default_staging_is_next_to_the_config_file(tmp_path: Path):
    path = tmp_path / "conf" / "pimsync.toml"
    path.parent.mkdir()
    path.write_text("")
    config = load_config(path, {})
    assert config.staging.url == f"sqlite:///{path.parent.resolve() / 'staging.db'}"


def test_every_field_error_is_reported(tmp_path: Path):
    path = tmp_path / "pimsync.toml"
    path.write_text(
        '[pim]\nbase_url = "not a url"\nbogus = 1\n[magento]\nconcurrency = 0\nmode = "fast"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    problems = caught.value.problems
    assert len(problems) == 4
    assert "[pim] base_url: Input should be a valid URL, relative URL without a base" in problems
    assert "[pim] bogus: unknown key" in problems
    assert any(p.startswith("[magento] concurrency:") for p in problems)
    assert any(p.startswith("[magento] mode:") for p in problems)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[pim\n", "is not valid TOML"),
        ("[unknown]\nx = 1\n", "unknown key"),
    ],
)
def test_broken_files(tmp_path: Path, content: str, expected: str):
    path = tmp_path / "pimsync.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert expected in caught.value.message + " ".join(caught.value.problems)


def test_missing_explicit_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", {})


def test_unknown_env_section_and_key():
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"PIMSYNC_PIMM__BASE_URL": "x"})
    assert caught.value.problems == ["PIMSYNC_PIMM__BASE_URL: no such section"]
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"PIMSYNC_PIM__BASEURL": "x"})
    assert caught.value.problems == ["[pim] baseurl: unknown key"]


def test_require_names_the_missing_keys_and_their_env_vars():
    config = load_config(None, {})
    with pytest.raises(ConfigError) as caught:
        config.require("pim.base_url", "magento.token")
    assert caught.value.problems == [
        "[pim] base_url is required (or set PIMSYNC_PIM__BASE_URL)",
        "[magento] token is required (or set PIMSYNC_MAGENTO__TOKEN)",
    ]


def test_fingerprint_ignores_secrets_but_not_settings():
    base = {"PIMSYNC_PIM__BASE_URL": "http://pim"}
    one = load_config(None, {**base, "PIMSYNC_PIM__SECRET": "a", "PIMSYNC_MAGENTO__TOKEN": "x"})
    two = load_config(None, {**base, "PIMSYNC_PIM__SECRET": "b"})
    three = load_config(None, {**base, "PIMSYNC_PIM__TIMEZONE": "Europe/Paris"})
    assert one.fingerprint() == two.fingerprint()
    assert one.fingerprint() != three.fingerprint()


def test_secrets_are_masked_in_repr():
    config = load_config(
        None, {"PIMSYNC_PIM__PASSWORD": "hunter2", "PIMSYNC_MAGENTO__TOKEN": "t0k"}
    )
    assert "hunter2" not in repr(config)
    assert "t0k" not in repr(config)


def test_example_config_documents_every_key_with_its_default():
    from pimsync.config import Config

    example = Path(__file__).parents[2] / "config.example.toml"
    text = example.read_text()
    loaded = load_config(example, {})
    defaults = Config()
    for section in ("pim", "magento", "staging", "sync", "mapping"):
        model = getattr(defaults, section)
        for key in type(model).model_fields:
            assert f"{key} =" in text, f"[{section}] {key} is not documented"
        if section != "staging":  # the staging default URL is resolved against the file
            assert getattr(loaded, section) == model, f"[{section}] example differs from defaults"
