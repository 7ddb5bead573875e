"""Configuration: a TOML file, then `PIMSYNC_SECTION__KEY` env vars, then CLI options.

`load_config(path, environ)` is pure: it reads only the file and the mapping it is given, so tests
and schedulers can build a configuration without touching `os.environ`.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from pimsync.errors import ConfigError

ENV_PREFIX = "PIMSYNC_"
DEFAULT_CONFIG_NAME = "pimsync.toml"
FEEDS = ("attributes", "categories", "products", "assets")
# Push feeds: the import's products feed is pushed in two steps, configurable parents and simple
# products first, then the variants that hang off them.
PUSH_FEEDS = ("attributes", "categories", "products", "variants", "assets")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PimConfig(Section):
    type: Literal["akeneo"] = "akeneo"
    base_url: AnyHttpUrl | None = None
    client_id: str | None = None
    secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    # Akeneo 7+ and SaaS key products by uuid; older versions only have /products.
    product_endpoint: Literal["products-uuid", "products"] = "products-uuid"
    # The `updated` filter on products is read in the PIM server's own time zone (SaaS: UTC).
    timezone: str = "UTC"
    page_size: int = Field(default=100, ge=1, le=100)
    timeout: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=20)
    max_retry_wait: float = Field(default=60.0, gt=0)
    verify_tls: bool = True
    ca_bundle: Path | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class MagentoConfig(Section):
    base_url: AnyHttpUrl | None = None
    token: SecretStr | None = None
    mode: Literal["sync", "bulk"] = "sync"
    concurrency: int = Field(default=8, ge=1, le=256)
    max_items_per_request: int = Field(default=100, ge=1, le=5000)
    timeout: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    max_retry_wait: float = Field(default=60.0, gt=0)
    verify_tls: bool = True
    ca_bundle: Path | None = None


class StagingConfig(Section):
    # Empty means "staging.db next to the config file"; resolved by load_config.
    url: str = ""
    # Rows a transaction writes. Two batches are in memory at once (one written while the next
    # is prepared): 500 keeps an import under ~100 MB at no measurable cost in speed.
    batch_size: int = Field(default=500, ge=1, le=10000)
    # Processes that validate and hash the pages of a large listing beside the importing one;
    # 0 does everything in the importing process.
    prepare_processes: int = Field(default=2, ge=0, le=64)


DeletionMode = Literal["ignore", "disable", "delete"]


class DeletionsConfig(Section):
    """What `create` does in Magento with items a full import found deleted in the PIM.

    Attributes and assets are not here on purpose: deleting a Magento attribute drops its values
    from every product, and images a product no longer has are always removed with the product.
    """

    categories: DeletionMode = "ignore"  # disable: is_active false
    products: DeletionMode = "ignore"  # simple products and configurable parents
    variants: DeletionMode = "ignore"


class SyncConfig(Section):
    overlap_seconds: int = Field(default=120, ge=0)
    auto_create_new: bool = True
    reindex_command: list[str] = Field(default_factory=list)
    deletions: DeletionsConfig = Field(default_factory=DeletionsConfig)
    # A push refuses to export a feed's deletions when they exceed this share of the feed (a PIM
    # answering an empty catalog must not empty the shop).
    deletion_threshold: float = Field(default=0.05, ge=0, le=1)
    # The run lock's lease: a run that dies blocks the next one at most this long (seconds).
    lock_lease_seconds: float = Field(default=60.0, ge=1, le=3600)

    @field_validator("reindex_command", mode="before")
    @classmethod
    def _command_from_env(cls, value: Any) -> Any:
        # An env var can only carry a string: accept a JSON list there.
        if isinstance(value, str):
            return orjson.loads(value) if value.strip().startswith("[") else value.split()
        return value


class MappingConfig(Section):
    """How PIM data becomes Magento data. Changing it marks only the items whose payload changes."""

    # PIM locale -> Magento store view code. The admin locale's values are written globally.
    locales: dict[str, str] = Field(
        default_factory=lambda: {"en_US": "default", "fr_FR": "fr", "de_DE": "de"}
    )
    admin_locale: str = "en_US"
    channel: str = "ecommerce"  # the PIM channel whose scopable values are pushed
    # PIM currency -> Magento website code. With Magento's default (global) price scope, the
    # price comes from the currency mapped to the first of `websites`.
    currencies: dict[str, str] = Field(default_factory=lambda: {"EUR": "base"})
    websites: list[str] = Field(default_factory=lambda: ["base"], min_length=1)
    attribute_prefix: str = Field(default="pim_", pattern=r"^[a-z][a-z0-9_]*$|^$")
    # PIM family -> Magento attribute set name; unmapped families get a set named after them.
    attribute_sets: dict[str, str] = Field(default_factory=dict)
    create_attribute_sets: bool = True
    category_root_id: int = Field(default=2, ge=1)  # Magento parent of the PIM's root categories

    @field_validator("admin_locale")
    @classmethod
    def _admin_locale_mapped(cls, value: str, info: ValidationInfo) -> str:
        locales = info.data.get("locales") or {}
        if locales and value not in locales:
            raise ValueError(f"{value!r} is not one of the mapped locales ({', '.join(locales)})")
        return value

    def fingerprint(self) -> str:
        return hashlib.sha256(
            orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        ).hexdigest()[:16]


class Config(BaseSettings):
    """The whole configuration; every section has working defaults except the remote URLs."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    pim: PimConfig = Field(default_factory=PimConfig)
    magento: MagentoConfig = Field(default_factory=MagentoConfig)
    staging: StagingConfig = Field(default_factory=StagingConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    mapping: MappingConfig = Field(default_factory=MappingConfig)
    source_path: Path | None = Field(default=None, exclude=True)

    def require(self, *keys: str) -> None:
        """Raise ConfigError naming every dotted key in `keys` that has no value."""
        missing = []
        for key in keys:
            section, name = key.split(".")
            if getattr(getattr(self, section), name) is None:
                env = f"{ENV_PREFIX}{section.upper()}__{name.upper()}"
                missing.append(f"[{section}] {name} is required (or set {env})")
        if missing:
            raise ConfigError("the configuration is incomplete", missing)

    def fingerprint(self) -> str:
        """A hash of every setting that changes what is synced; secrets are left out."""
        data = self.model_dump(mode="json", exclude={"source_path": True})
        for section, key in (("pim", "secret"), ("pim", "password"), ("magento", "token")):
            data[section].pop(key, None)
        return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source, reading a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(
            settings_cls, env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def load_config(
    path: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration from the file at `path` (optional), `environ` and `overrides`.

    `path=None` looks for `./pimsync.toml` and is happy without one, so a configuration can come
    from env vars alone. A path given explicitly must exist.
    """
    explicit = path is not None
    path = path or Path(DEFAULT_CONFIG_NAME)
    file_data: dict[str, Any] = {}
    if path.exists() or explicit:
        file_data = _read_toml(path)
    unknown_env = [
        key
        for key in environ
        if key.upper().startswith(ENV_PREFIX)
        and key.upper()[len(ENV_PREFIX) :].split("__")[0].lower() not in Config.model_fields
    ]
    try:
        sources = (
            InitSettingsSource(Config, dict(overrides or {})),
            _MappingEnvSource(Config, environ),
            InitSettingsSource(Config, file_data),
        )
        merged: dict[str, Any] = {}
        for source in reversed(sources):
            _deep_merge(merged, source())
        config = Config.model_validate({**merged, "source_path": path if path.exists() else None})
    except ValidationError as exc:
        where = f" (file {path}, env {ENV_PREFIX}*)" if path.exists() else f" (env {ENV_PREFIX}*)"
        raise ConfigError(f"invalid configuration{where}", _field_errors(exc)) from None
    except ValueError as exc:  # a malformed env value pydantic-settings could not decode
        raise ConfigError("invalid configuration in the environment", [str(exc)]) from None
    if unknown_env:
        raise ConfigError(
            "unknown configuration variables in the environment",
            [f"{key}: no such section" for key in sorted(unknown_env)],
        )
    if not config.staging.url:
        base = path.resolve().parent if path.exists() else Path.cwd()
        staging = config.staging.model_copy(update={"url": f"sqlite:///{base / 'staging.db'}"})
        config = config.model_copy(update={"staging": staging})
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: not UTF-8 (byte {exc.start})") from None


def _deep_merge(target: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        elif isinstance(value, Mapping):
            target[key] = {}
            _deep_merge(target[key], value)
        else:
            target[key] = value


def _field_errors(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        where = f"[{location[0]}] {'.'.join(location[1:])}" if len(location) > 1 else location[0]
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown key")
        else:
            problems.append(f"{where}: {error['msg']}")
    return problems
