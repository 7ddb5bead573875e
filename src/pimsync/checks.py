"""`pimsync check`: validate the configuration and reach both ends, changing nothing.

`run_checks` answers one `CheckResult` per check, in a fixed order: configuration, staging, PIM
credentials, PIM read, Magento token and permissions, mapped store views, websites, attribute
sets. Each check runs on its own; one whose prerequisite failed says "skipped: <why>" and counts
as failed, so the list always has every check. Nothing is written anywhere: the staging database
is only asked for its revision (never migrated, a missing SQLite file is not created), and the
remotes only get reads. Every request has one attempt and a short timeout, so a check run on a
broken setup ends in seconds rather than after the retry budget of a real run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from pimsync.app import App
from pimsync.config import ENV_PREFIX, Config
from pimsync.errors import MagentoError, PimsyncError, RetryableHTTPError
from pimsync.magento.client import MagentoClient
from pimsync.magento.http import ItemRejected, classify_response, render_message
from pimsync.pim.client import PimClient
from pimsync.staging.database import HEAD_REVISION, current_revision, failure_reason, open_engine

CONFIG_CODE, REMOTE_CODE, STAGING_CODE = 2, 4, 5
TIMEOUT = 10.0  # seconds per request: a check waits for an answer, not for a retry budget
PG_CONNECT_TIMEOUT = "10"
PIM_KEYS = ("base_url", "client_id", "secret", "username", "password")
MAGENTO_KEYS = ("base_url", "token")

PIM_URL = "[pim] base_url or PIMSYNC_PIM__BASE_URL"
PIM_CREDENTIALS = (
    "[pim] client_id/secret/username/password or PIMSYNC_PIM__CLIENT_ID/SECRET/USERNAME/PASSWORD"
)
MAGENTO_URL = "[magento] base_url or PIMSYNC_MAGENTO__BASE_URL"
MAGENTO_TOKEN = "[magento] token or PIMSYNC_MAGENTO__TOKEN"
BEARER_NOTE = (
    "an integration token is accepted as Bearer only with "
    "oauth/consumer/enable_integration_as_bearer = 1 (Magento 2.4.4+)"
)
MAGENTO_ACL = "the API resources of the Magento integration or admin role behind [magento] token"
STAGING_URL = "[staging] url, PIMSYNC_STAGING__URL or --staging-url"
MIGRATE = "run `pimsync db upgrade`"

# What pimsync reads from Magento; the last three serve the mapping checks of the same name.
MAGENTO_PROBES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("products", "products", {"searchCriteria[pageSize]": "1"}),
    ("store views", "store/storeViews", {}),
    ("websites", "store/websites", {}),
    ("attribute sets", "products/attribute-sets/sets/list", {"searchCriteria[pageSize]": "1"}),
)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome; `setting` names what to fix, `exit_code` is its failure's code."""

    name: str
    ok: bool
    detail: str
    setting: str | None = None
    exit_code: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "setting": self.setting}


def exit_code(results: list[CheckResult]) -> int:
    """0 when every check passed, else the code of the first failed one (they run in the order
    configuration, staging, PIM, Magento, so the most basic failure decides)."""
    return next((r.exit_code for r in results if not r.ok), 0)


def run_checks(app_or_config: App | Config) -> list[CheckResult]:
    """Run every check against the configured staging database, PIM and Magento."""
    if isinstance(app_or_config, App):
        config = app_or_config.config
        pim_transport = app_or_config.pim_transport
        magento_transport = app_or_config.magento_transport
    else:
        config, pim_transport, magento_transport = app_or_config, None, None
    missing = _missing_keys(config)
    results = [_check_configuration(config, missing), _check_staging(config.staging.url)]
    results += _check_pim(config, missing, pim_transport)
    results += _check_magento(config, missing, magento_transport)
    return results


# -- configuration and staging -------------------------------------------------------------------


def _missing_keys(config: Config) -> list[str]:
    missing = []
    for section, keys in (("pim", PIM_KEYS), ("magento", MAGENTO_KEYS)):
        for key in keys:
            value = getattr(getattr(config, section), key)
            secret = getattr(value, "get_secret_value", None)
            text = secret() if callable(secret) else value
            if text is None or not str(text).strip():
                missing.append(f"{section}.{key}")
    return missing


def _key(dotted: str) -> str:
    section, key = dotted.split(".")
    return f"[{section}] {key}"


def _key_and_env(dotted: str) -> str:
    return f"{_key(dotted)} or {ENV_PREFIX}{dotted.replace('.', '__').upper()}"


def _check_configuration(config: Config, missing: list[str]) -> CheckResult:
    name = "configuration"
    if missing:
        keys = ", ".join(_key(k) for k in missing)
        setting = "; ".join(_key_and_env(k) for k in missing)
        return CheckResult(name, False, f"missing {keys}", setting, CONFIG_CODE)
    source = f"file {config.source_path}" if config.source_path else "no file"
    return CheckResult(name, True, f"loaded ({source}, env {ENV_PREFIX}*)")


def _check_staging(url: str) -> CheckResult:
    name = "staging"
    try:
        parsed = make_url(url)
    except ArgumentError:
        return CheckResult(
            name, False, "[staging] url is not a database URL", STAGING_URL, CONFIG_CODE
        )
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(str(parsed.database))
        # open_engine would create the file, and an empty one would gain a WAL header.
        if not path.exists() or (path.is_file() and path.stat().st_size == 0):
            # Every command creates and migrates it on first use: fine if it can.
            state = "does not exist yet" if not path.exists() else "is empty"
            folder = next((p for p in path.parents if p.exists()), Path("/"))
            if folder.is_dir() and os.access(folder, os.W_OK):
                detail = f"the SQLite file {path} {state}; the first run creates it"
                return CheckResult(name, True, detail, None, 0)
            detail = f"the SQLite file {path} {state} and {folder} is not writable"
            return CheckResult(name, False, detail, STAGING_URL, STAGING_CODE)
    try:
        engine = open_engine(_with_connect_timeout(parsed).render_as_string(hide_password=False))
    except PimsyncError as exc:
        return CheckResult(name, False, exc.message, STAGING_URL, exc.exit_code)
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        detail = f"cannot open {shown}: {failure_reason(exc)}"
        return CheckResult(name, False, detail, STAGING_URL, STAGING_CODE)
    finally:
        engine.dispose()
    if revision == HEAD_REVISION:
        return CheckResult(name, True, f"{shown} at revision {revision}")
    detail = f"{shown} is at revision {revision or 'none'}, head is {HEAD_REVISION}"
    if revision is not None and revision > HEAD_REVISION:
        # Zero-padded revision ids: a larger one comes from a newer pimsync.
        return CheckResult(name, False, detail, "upgrade pimsync", STAGING_CODE)
    return CheckResult(name, False, detail, MIGRATE, STAGING_CODE)


def _with_connect_timeout(url: URL) -> URL:
    """A PostgreSQL host that drops packets would otherwise hold the check for minutes."""
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        return url.update_query_dict({"connect_timeout": PG_CONNECT_TIMEOUT})
    return url


# -- PIM -----------------------------------------------------------------------------------------


def _check_pim(
    config: Config, missing: list[str], transport: httpx.BaseTransport | None
) -> list[CheckResult]:
    names = ("PIM credentials", "PIM read")
    unset = [k for k in missing if k.startswith("pim.")]
    if unset:
        why = f"skipped: {_listing(unset)} not set (see configuration)"
        return [CheckResult(n, False, why, None, REMOTE_CODE) for n in names]
    quick = config.pim.model_copy(update={**_one_attempt(config.pim.timeout), "page_size": 1})
    with PimClient.from_config(quick, transport, sleep=_no_wait) as client:
        credentials = _pim_credentials(client)
        if not credentials.ok:
            skipped = CheckResult(
                names[1], False, "skipped: no PIM token (see PIM credentials)", None, REMOTE_CODE
            )
            return [credentials, skipped]
        return [credentials, _pim_read(client)]


def _pim_credentials(client: PimClient) -> CheckResult:
    name = "PIM credentials"
    try:
        # The API root needs no token: failing here is the URL (or a proxy), not the credentials.
        client.server_now()
    except PimsyncError as exc:
        return _failure(name, exc, PIM_URL)
    try:
        client.authenticate()
    except PimsyncError as exc:
        reason, _hint = _split_hint(exc.message)
        return CheckResult(name, False, reason, PIM_CREDENTIALS, REMOTE_CODE)
    return CheckResult(name, True, f"the PIM granted a token to {client.settings.username}")


def _pim_read(client: PimClient) -> CheckResult:
    name = "PIM read"
    path = f"/api/rest/v1/{client.settings.product_endpoint}"
    try:
        # page_size is 1 in the check's settings copy, and only the first page is asked for.
        page = next(client.products(), None)
        count = 0 if page is None else len(page)  # the page's records are read here
    except PimsyncError as exc:
        return _failure(name, exc, PIM_URL)
    return CheckResult(name, True, f"read {count} product(s) from {path}")


# -- Magento -------------------------------------------------------------------------------------


def _check_magento(
    config: Config, missing: list[str], transport: httpx.BaseTransport | None
) -> list[CheckResult]:
    names = ("Magento token and permissions", "store views", "websites", "attribute sets")
    unset = [k for k in missing if k.startswith("magento.")]
    if unset:
        why = f"skipped: {_listing(unset)} not set (see configuration)"
        return [CheckResult(n, False, why, None, REMOTE_CODE) for n in names]
    quick = config.magento.model_copy(update=_one_attempt(config.magento.timeout))
    with MagentoClient.from_config(quick, transport, sleep=_no_wait) as client:
        access, readable = _magento_access(client)
        mapping = config.mapping
        checks: dict[str, Callable[[], tuple[str, str | None]]] = {
            names[1]: lambda: _store_views(client, mapping.locales),
            names[2]: lambda: _websites(client, mapping.websites, mapping.currencies),
            names[3]: lambda: _attribute_sets(
                client, mapping.attribute_sets, mapping.create_attribute_sets
            ),
        }
        results = [access]
        for name, run in checks.items():
            if name in readable:  # the probes are named after the mapping checks they serve
                results.append(_mapped(name, run))
                continue
            cannot = f"the token cannot read {name}" if readable else "Magento cannot be read"
            why = f"skipped: {cannot} (see {names[0]})"
            results.append(CheckResult(name, False, why, None, REMOTE_CODE))
        return results


@dataclass(frozen=True, slots=True)
class _Probe:
    """One read's outcome: None `status` means it was answered with what pimsync expects."""

    what: str
    status: int | None = None
    resource: str | None = None
    message: str = ""
    setting: str | None = None


def _probe(client: MagentoClient, what: str, resource: str, params: dict[str, str]) -> _Probe:
    # Sent raw, not through the client's methods: the check needs the status and the ACL
    # resource Magento names, which the client folds into one run-stopping message.
    path = f"/rest/all/V1/{resource}"
    try:
        response = client.http.get(path, params=params)
    except httpx.TransportError as exc:
        message = f"Magento could not be reached ({type(exc).__name__}: {exc or 'no detail'})"
        return _Probe(what, 0, message=message, setting=MAGENTO_URL)
    if response.status_code in (401, 403):
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        parameters = body.get("parameters") if isinstance(body, dict) else None
        acl = parameters.get("resources") if isinstance(parameters, dict) else None
        text = render_message(body) if body is not None else response.reason_phrase
        return _Probe(what, response.status_code, str(acl) if acl else None, text)
    try:
        classify_response(response)
    except MagentoError as exc:  # a redirect or an unknown route: the URL is wrong
        return _Probe(what, response.status_code, message=exc.message, setting=MAGENTO_URL)
    except (RetryableHTTPError, ItemRejected) as exc:  # one attempt is all a check gets
        message = f"Magento answered {exc.message} for GET {path}"
        if isinstance(exc, ItemRejected):
            message = f"Magento answered {exc.status} ({exc.message}) for GET {path}"
        return _Probe(what, response.status_code, message=message, setting=MAGENTO_URL)
    return _Probe(what)


def _magento_access(client: MagentoClient) -> tuple[CheckResult, set[str]]:
    """The token check, and what the token could read (the mapping checks need those)."""
    name = "Magento token and permissions"
    probes = []
    for what, resource, params in MAGENTO_PROBES:
        probe = _probe(client, what, resource, params)
        if probe.status is not None and probe.status not in (401, 403):
            # Unreachable or not Magento: the other reads would only repeat it (or time out).
            reason, _hint = _split_hint(probe.message)
            return CheckResult(name, False, reason, probe.setting, REMOTE_CODE), set()
        probes.append(probe)
    denied = [p for p in probes if p.status is not None]
    if denied and all(p.status == 401 for p in probes):
        detail = f"Magento refused the token: 401 {denied[0].message} ({BEARER_NOTE})"
        return CheckResult(name, False, detail, MAGENTO_TOKEN, REMOTE_CODE), set()
    if denied:
        # Real Magento answers 401 also for a valid token lacking one resource; that the other
        # reads passed tells the two apart.
        missing = ", ".join(
            f"{p.resource or 'unknown resource'} ({p.status} on {p.what}: {p.message})"
            for p in denied
        )
        detail = f"the token lacks the ACL resource {missing}"
        # Nothing read at all is a token with no resource, or one Magento does not know.
        read = {p.what for p in probes if p.status is None}
        return CheckResult(name, False, detail, MAGENTO_ACL, REMOTE_CODE), read
    read_all = ", ".join(p.what for p in probes)
    return CheckResult(name, True, f"the token reads {read_all}"), {p.what for p in probes}


def _mapped(name: str, check: Callable[[], tuple[str, str | None]]) -> CheckResult:
    """Run a mapping check; `check` answers (detail, None) when fine, (detail, setting) if not."""
    try:
        detail, setting = check()
    except (PimsyncError, ItemRejected) as exc:
        return _failure(name, exc, MAGENTO_URL)
    if setting is None:
        return CheckResult(name, True, detail)
    # The same mismatch stops `pimsync create` as a configuration error.
    return CheckResult(name, False, detail, setting, CONFIG_CODE)


def _store_views(client: MagentoClient, locales: dict[str, str]) -> tuple[str, str | None]:
    have = [view.code for view in client.store_views()]
    unknown = sorted({code for code in locales.values() if code not in have})
    if unknown:
        detail = f"Magento has no store view {_quoted(unknown)} (it has {', '.join(have)})"
        return detail, "[mapping] locales or PIMSYNC_MAPPING__LOCALES"
    return _exist(sorted(set(locales.values()))), None


def _websites(
    client: MagentoClient, websites: list[str], currencies: dict[str, str]
) -> tuple[str, str | None]:
    have = [site.code for site in client.websites()]
    in_websites = sorted({code for code in websites if code not in have})
    in_currencies = sorted({code for code in currencies.values() if code not in have})
    if not in_websites and not in_currencies:
        return _exist(sorted({*websites, *currencies.values()})), None
    unknown = sorted({*in_websites, *in_currencies})
    settings = []
    if in_websites:
        settings.append("[mapping] websites or PIMSYNC_MAPPING__WEBSITES")
    if in_currencies:
        settings.append("[mapping] currencies or PIMSYNC_MAPPING__CURRENCIES")
    detail = f"Magento has no website {_quoted(unknown)} (it has {', '.join(have)})"
    return detail, "; ".join(settings)


def _attribute_sets(
    client: MagentoClient, mapped: dict[str, str], create: bool
) -> tuple[str, str | None]:
    have = client.attribute_sets()
    wanted = sorted(set(mapped.values()))
    unknown = [name for name in wanted if name not in have]
    if not wanted:
        return f"none mapped; Magento has {len(have)} product attribute set(s)", None
    if not unknown:
        return _exist(wanted), None
    if create:
        return f"{_quoted(unknown)} will be created (create_attribute_sets = true)", None
    detail = f"Magento has no attribute set {_quoted(unknown)} and create_attribute_sets is false"
    return detail, (
        "[mapping] attribute_sets or PIMSYNC_MAPPING__ATTRIBUTE_SETS, "
        "or [mapping] create_attribute_sets = true"
    )


# -- helpers -------------------------------------------------------------------------------------


def _one_attempt(timeout: float) -> dict[str, Any]:
    """Client settings for a check: no retries (so no Retry-After waits), a short timeout."""
    return {"max_attempts": 1, "timeout": min(timeout, TIMEOUT), "max_retry_wait": 1.0}


def _no_wait(_seconds: float) -> None:
    """With one attempt nothing waits; should a retry slip in, it does not wait either."""


def _failure(name: str, exc: PimsyncError | ItemRejected, default_setting: str) -> CheckResult:
    """A client's error as a failed check: its "check X" tail becomes the setting to fix."""
    reason, hint = _split_hint(exc.message)
    code = exc.exit_code if isinstance(exc, PimsyncError) else REMOTE_CODE
    bare = re.fullmatch(r"\[(\w+)\] (\w+)", hint or "")
    if bare:  # a single key: name its environment variable too
        hint = _key_and_env(f"{bare[1]}.{bare[2]}")
    return CheckResult(name, False, reason, hint or default_setting, code)


def _split_hint(message: str) -> tuple[str, str | None]:
    """The clients end their messages with ": check <what>"; the check line shows it apart."""
    for marker in (": check ", "; check "):
        head, found, hint = message.rpartition(marker)
        if found:
            return head, hint
    return message, None


def _listing(dotted: list[str]) -> str:
    return ", ".join(_key(k) for k in dotted) + (" is" if len(dotted) == 1 else " are")


def _quoted(codes: list[str]) -> str:
    return ", ".join(repr(code) for code in codes)


def _exist(codes: list[str]) -> str:
    return f"{_quoted(codes)} {'exists' if len(codes) == 1 else 'exist'} in Magento"
