"""`run_checks`: every check against in-process fakes, each failure on its own, and exit codes."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import text

from pimsync.app import App
from pimsync.checks import CheckResult, exit_code, run_checks
from pimsync.staging.database import HEAD_REVISION, current_revision, open_engine, upgrade
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from tests.conftest import make_config

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
MAGENTO_ENV = {
    "PIMSYNC_MAGENTO__BASE_URL": "http://magento.test",
    "PIMSYNC_MAGENTO__TOKEN": "magento-token",
}
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def magento() -> Iterator[FakeMagento]:
    with FakeMagento() as fake:
        yield fake


def migrate(url: str) -> str:
    engine = open_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def migrated(staging_url: str) -> str:
    """A staging database at the head revision, on SQLite and on PostgreSQL."""
    return migrate(staging_url)


@pytest.fixture
def sqlite(tmp_path) -> str:
    """A migrated SQLite staging database, for the checks that do not look at staging."""
    return migrate(f"sqlite:///{tmp_path / 'staging.db'}")


def check(
    staging_url: str,
    *,
    pim: Handler | None = None,
    magento: Handler | None = None,
    **env: str,
) -> dict[str, CheckResult]:
    config = make_config(staging_url, **{**MAGENTO_ENV, **env})
    app = App(
        config,
        pim_transport=httpx.MockTransport(pim or FakePim(products=3)),
        magento_transport=httpx.MockTransport(magento or FakeMagento(consumer=False)),
    )
    results = run_checks(app)
    assert [r.name for r in results] == NAMES
    by_name = {r.name: r for r in results}
    by_name["exit"] = CheckResult("exit", True, "", exit_code=exit_code(results))
    return by_name


def failed(results: dict[str, CheckResult]) -> list[str]:
    return [name for name, r in results.items() if not r.ok]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_everything_passes_against_the_fakes(migrated: str, magento: FakeMagento):
    results = check(migrated, magento=magento)
    assert failed(results) == []
    assert results["exit"].exit_code == 0
    assert results["staging"].detail.endswith(f"at revision {HEAD_REVISION}")
    assert results["PIM read"].detail == "read 1 product(s) from /api/rest/v1/products-uuid"
    assert results["store views"].detail == "'de', 'default', 'fr' exist in Magento"
    assert all(r.setting is None for r in results.values())
    # Reads only: nothing was written to Magento.
    assert magento.request_count() == magento.request_count(method="GET")


def test_a_bare_config_uses_real_transports(sqlite: str):
    # A Config alone means real transports: an unreachable PIM and Magento, a fine staging.
    config = make_config(
        sqlite,
        PIMSYNC_PIM__BASE_URL=f"http://127.0.0.1:{closed_port()}",
        PIMSYNC_MAGENTO__BASE_URL=f"http://127.0.0.1:{closed_port()}",
        PIMSYNC_MAGENTO__TOKEN="t",
    )
    results = {r.name: r for r in run_checks(config)}
    assert results["staging"].ok
    assert not results["PIM credentials"].ok
    assert results["PIM credentials"].setting == "[pim] base_url or PIMSYNC_PIM__BASE_URL"
    assert results["Magento token and permissions"].detail.startswith(
        "Magento could not be reached (ConnectError"
    )
    assert results["store views"].detail.startswith("skipped: ")


def test_wrong_pim_secret(sqlite: str):
    results = check(sqlite, PIMSYNC_PIM__SECRET="not-the-secret")
    assert failed(results) == ["PIM credentials", "PIM read"]
    credentials = results["PIM credentials"]
    assert credentials.detail.startswith("the PIM refused the credentials (422 ")
    assert credentials.setting is not None
    assert credentials.setting.startswith("[pim] client_id/secret/username/password or ")
    assert results["PIM read"].detail == "skipped: no PIM token (see PIM credentials)"
    assert results["exit"].exit_code == 4


def test_pim_role_without_product_permission(sqlite: str):
    pim = FakePim(products=3)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/rest/v1/products"):
            return httpx.Response(403, json={"code": 403, "message": "Access forbidden."})
        return pim(request)

    results = check(sqlite, pim=handler)
    assert failed(results) == ["PIM read"]
    assert results["PIM read"].detail == (
        "the PIM answered 403 Access forbidden. for /api/rest/v1/products-uuid"
    )
    assert results["PIM read"].setting == "the ACLs of the role of [pim] username in the PIM"


def test_wrong_product_endpoint_names_it(sqlite: str):
    pim = FakePim(products=3)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/rest/v1/products-uuid"):
            return httpx.Response(404, json={"code": 404, "message": "Not found"})
        return pim(request)

    results = check(sqlite, pim=handler)
    assert failed(results) == ["PIM read"]
    assert "[pim] product_endpoint" in (results["PIM read"].setting or "")


def test_wrong_magento_token(sqlite: str):
    results = check(sqlite, PIMSYNC_MAGENTO__TOKEN="not-the-token")
    assert failed(results) == [
        "Magento token and permissions",
        "store views",
        "websites",
        "attribute sets",
    ]
    access = results["Magento token and permissions"]
    assert access.detail.startswith(
        "Magento refused the token: 401 The consumer isn't authorized to access "
        "Magento_Catalog::products."
    )
    assert access.setting == "[magento] token or PIMSYNC_MAGENTO__TOKEN"
    assert results["websites"].detail.startswith("skipped: ")
    assert results["exit"].exit_code == 4


def without(resource: str, path: str, status: int, magento: FakeMagento) -> Handler:
    """A token Magento accepts, whose integration lacks the ACL `resource` guarding `path`."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(path):
            body = {
                "message": "The consumer isn't authorized to access %resources.",
                "parameters": {"resources": resource},
            }
            return httpx.Response(status, json=body)
        return magento(request)

    return handler


@pytest.mark.parametrize("status", [403, 401])
def test_token_without_the_attribute_sets_resource(sqlite: str, magento: FakeMagento, status: int):
    # Real Magento says 401 for a missing resource too; the other reads passing tell it apart.
    handler = without("Magento_Catalog::sets", "/attribute-sets/sets/list", status, magento)
    results = check(sqlite, magento=handler)
    assert failed(results) == ["Magento token and permissions", "attribute sets"]
    access = results["Magento token and permissions"]
    assert access.detail.startswith(
        f"the token lacks the ACL resource Magento_Catalog::sets ({status} on attribute sets: "
    )
    assert access.setting is not None and "API resources" in access.setting
    assert results["store views"].ok and results["websites"].ok
    assert results["attribute sets"].detail == (
        "skipped: the token cannot read attribute sets (see Magento token and permissions)"
    )
    assert results["exit"].exit_code == 4


def test_token_with_no_resource_at_all_skips_the_mapping_checks(sqlite: str):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"message": "Forbidden"})

    results = check(sqlite, magento=handler)
    assert results["Magento token and permissions"].detail.startswith(
        "the token lacks the ACL resource unknown resource (403 on products: Forbidden)"
    )
    assert results["store views"].detail.startswith("skipped: ")


def test_magento_base_url_that_is_not_magento(sqlite: str):
    def handler(request: httpx.Request) -> httpx.Response:
        html = {"Content-Type": "text/html"}
        return httpx.Response(404, text="<html>Not Found</html>", headers=html)

    results = check(sqlite, magento=handler)
    access = results["Magento token and permissions"]
    assert access.detail.startswith("Magento answered 404 ")
    assert access.setting is not None and access.setting.startswith("[magento] base_url")


def test_unmapped_store_code(sqlite: str, magento: FakeMagento):
    locales = '{"en_US": "default", "fr_FR": "xx"}'
    results = check(sqlite, magento=magento, PIMSYNC_MAPPING__LOCALES=locales)
    assert failed(results) == ["store views"]
    assert results["store views"].detail == (
        "Magento has no store view 'xx' (it has default, fr, de)"
    )
    assert results["store views"].setting == "[mapping] locales or PIMSYNC_MAPPING__LOCALES"
    # The same mismatch stops `pimsync create` as a configuration error.
    assert results["exit"].exit_code == 2


def test_unknown_website_in_websites_or_currencies(sqlite: str, magento: FakeMagento):
    results = check(sqlite, magento=magento, PIMSYNC_MAPPING__WEBSITES='["base", "eu"]')
    assert failed(results) == ["websites"]
    assert results["websites"].detail == "Magento has no website 'eu' (it has base)"
    assert results["websites"].setting == "[mapping] websites or PIMSYNC_MAPPING__WEBSITES"
    currencies = check(sqlite, magento=magento, PIMSYNC_MAPPING__CURRENCIES='{"USD": "us"}')
    assert failed(currencies) == ["websites"]
    assert currencies["websites"].setting == "[mapping] currencies or PIMSYNC_MAPPING__CURRENCIES"


def test_attribute_sets(sqlite: str, magento: FakeMagento):
    sets = '{"shoes": "Shoes", "default": "Default"}'
    refused = check(
        sqlite,
        magento=magento,
        PIMSYNC_MAPPING__ATTRIBUTE_SETS=sets,
        PIMSYNC_MAPPING__CREATE_ATTRIBUTE_SETS="false",
    )
    assert failed(refused) == ["attribute sets"]
    assert refused["attribute sets"].detail == (
        "Magento has no attribute set 'Shoes' and create_attribute_sets is false"
    )
    assert (refused["attribute sets"].setting or "").startswith("[mapping] attribute_sets")
    assert refused["exit"].exit_code == 2
    created = check(sqlite, magento=magento, PIMSYNC_MAPPING__ATTRIBUTE_SETS=sets)
    assert created["attribute sets"].ok
    assert created["attribute sets"].detail == (
        "'Shoes' will be created (create_attribute_sets = true)"
    )
    present = check(sqlite, magento=magento, PIMSYNC_MAPPING__ATTRIBUTE_SETS='{"x": "Default"}')
    assert present["attribute sets"].detail == "'Default' exists in Magento"


def test_staging_not_migrated(staging_url: str):
    engine = open_engine(staging_url)  # created, empty
    try:
        with engine.connect() as connection:  # a table, so a SQLite file is not empty
            connection.execute(text("CREATE TABLE unrelated (id INTEGER)"))
            connection.commit()
        results = check(staging_url)
        assert failed(results) == ["staging"]
        assert results["staging"].detail.endswith(f"is at revision none, head is {HEAD_REVISION}")
        assert results["staging"].setting == "run `pimsync db upgrade`"
        assert results["exit"].exit_code == 5
        assert current_revision(engine) is None  # the check did not migrate it
    finally:
        engine.dispose()


def test_staging_behind_the_head_revision(migrated: str):
    engine = open_engine(migrated)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    engine.dispose()
    results = check(migrated)
    assert results["staging"].detail.endswith(f"is at revision 0002, head is {HEAD_REVISION}")
    assert results["staging"].setting == "run `pimsync db upgrade`"


def test_missing_sqlite_file_is_not_created(tmp_path):
    path = tmp_path / "nested" / "staging.db"
    results = check(f"sqlite:///{path}")
    assert failed(results) == []
    assert results["staging"].detail == (
        f"the SQLite file {path} does not exist yet; the first run creates it"
    )
    assert not path.exists() and not path.parent.exists()


def test_a_sqlite_file_that_cannot_be_created_fails(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    results = check(f"sqlite:///{blocker / 'staging.db'}")
    assert failed(results) == ["staging"]
    assert results["staging"].detail.endswith(f"and {blocker} is not writable")


def test_staging_unreachable_hides_the_password():
    url = f"postgresql+psycopg://pimsync:pg-pass-Z9@127.0.0.1:{closed_port()}/pimsync"
    results = check(url)
    assert failed(results) == ["staging"]
    staging = results["staging"]
    assert staging.detail.startswith("cannot open postgresql+psycopg://pimsync:***@127.0.0.1:")
    assert "pg-pass-Z9" not in staging.detail
    assert staging.setting == "[staging] url, PIMSYNC_STAGING__URL or --staging-url"
    assert results["exit"].exit_code == 5


def test_missing_required_keys(sqlite: str):
    config = make_config(sqlite, PIMSYNC_PIM__PASSWORD="")
    config = config.model_copy(update={"pim": config.pim.model_copy(update={"secret": None})})
    results = {r.name: r for r in run_checks(config)}
    configuration = results["configuration"]
    assert not configuration.ok
    assert configuration.detail == (
        "missing [pim] secret, [pim] password, [magento] base_url, [magento] token"
    )
    assert configuration.setting == (
        "[pim] secret or PIMSYNC_PIM__SECRET; [pim] password or PIMSYNC_PIM__PASSWORD; "
        "[magento] base_url or PIMSYNC_MAGENTO__BASE_URL; [magento] token or PIMSYNC_MAGENTO__TOKEN"
    )
    assert results["PIM credentials"].detail == (
        "skipped: [pim] secret, [pim] password are not set (see configuration)"
    )
    assert results["attribute sets"].detail == (
        "skipped: [magento] base_url, [magento] token are not set (see configuration)"
    )
    assert results["staging"].ok
    assert exit_code(list(results.values())) == 2


@pytest.mark.parametrize(
    ("failures", "code"),
    [
        ({"configuration": 2, "staging": 5, "PIM read": 4}, 2),
        ({"staging": 5, "PIM credentials": 4, "store views": 2}, 5),
        ({"PIM read": 4, "websites": 2}, 4),
        ({"attribute sets": 2}, 2),
        ({}, 0),
    ],
)
def test_exit_code_is_the_first_failed_checks(failures: dict[str, int], code: int):
    results = [
        CheckResult(name, name not in failures, "", exit_code=failures.get(name, 0))
        for name in NAMES
    ]
    assert exit_code(results) == code


def test_json_shape():
    result = CheckResult("staging", False, "at revision none", "run `pimsync db upgrade`", 5)
    assert result.as_dict() == {
        "name": "staging",
        "ok": False,
        "detail": "at revision none",
        "setting": "run `pimsync db upgrade`",
    }
