"""PimClient against hand-written handlers under httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimsync.config import PimConfig
from pimsync.errors import PimError
from pimsync.pim.client import PimClient
from pimsync.pim.records import Parsed, Rejected

Handler = Callable[[httpx.Request], httpx.Response]
SETTINGS = PimConfig(
    base_url="http://pim.test",
    client_id="id",
    secret="the-secret",
    username="user",
    password="the-password",
    max_attempts=4,
)
UUID = "fc24e6c3-933c-4a93-8a81-e5c703d134d5"


def token_response(n: int = 1) -> httpx.Response:
    return httpx.Response(
        200, json={"access_token": f"tok{n}", "refresh_token": f"ref{n}", "expires_in": 3600}
    )


def page(items: list, next_href: str | None = None) -> httpx.Response:
    links: dict = {"self": {"href": "http://pim.test/x"}}
    if next_href:
        links["next"] = {"href": next_href}
    return httpx.Response(200, json={"_links": links, "_embedded": {"items": items}})


def client_for(handler: Handler, sleeps: list[float] | None = None) -> PimClient:
    record = sleeps.append if sleeps is not None else (lambda _s: None)
    return PimClient.from_config(SETTINGS, httpx.MockTransport(handler), sleep=record)


def with_token(handler: Handler) -> Handler:
    def wrapped(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/oauth/v1/token":
            return token_response()
        return handler(request)

    return wrapped


def test_password_grant_then_bearer_and_pages_followed():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/oauth/v1/token":
            body = orjson.loads(request.content)
            assert body == {
                "grant_type": "password",
                "username": "user",
                "password": "the-password",
            }
            assert request.headers["Authorization"].startswith("Basic ")
            return token_response()
        assert request.headers["Authorization"] == "Bearer tok1"
        if "search_after" not in request.url.params:
            assert request.url.params["limit"] == "100"
            assert request.url.params["pagination_type"] == "search_after"
            return page(
                [{"uuid": UUID, "values": {}}],
                "http://pim.test/api/rest/v1/products-uuid?search_after=abc&limit=100",
            )
        return page([{"uuid": UUID.replace("f", "e"), "values": {}}])

    with client_for(handler) as client:
        pages = list(client.products())
    assert [len(p) for p in pages] == [1, 1]
    assert all(isinstance(item, Parsed) for p in pages for item in p)
    assert sum(r.url.path == "/api/oauth/v1/token" for r in seen) == 1


def test_updated_filter_uses_the_pim_time_zone():
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return page([])

    settings = SETTINGS.model_copy(update={"timezone": "Europe/Paris"})
    client = PimClient.from_config(settings, httpx.MockTransport(with_token(handler)))
    list(client.products(datetime(2026, 7, 1, 10, 0, 0, tzinfo=UTC)))
    list(client.categories(datetime(2026, 7, 1, 10, 0, 0, tzinfo=UTC)))
    product_search = orjson.loads(captured[0].url.params["search"])
    assert product_search == {"updated": [{"operator": ">", "value": "2026-07-01 12:00:00"}]}
    category_search = orjson.loads(captured[1].url.params["search"])
    assert category_search["updated"][0]["value"] == "2026-07-01T12:00:00+02:00"


def test_429_waits_for_retry_after_and_5xx_backs_off():
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(503),
            httpx.Response(502),
            page([]),
        ]
    )
    sleeps: list[float] = []
    client = client_for(with_token(lambda _r: next(answers)), sleeps)
    assert list(client.attributes()) == [[]]
    assert sleeps[0] == 7.0
    assert len(sleeps) == 3 and all(0 < s <= 60 for s in sleeps[1:])


def test_outage_after_retries_is_a_one_line_pim_error():
    client = client_for(
        with_token(lambda _r: httpx.Response(503, json={"code": 503, "message": "down"}))
    )
    with pytest.raises(PimError) as caught:
        list(client.attributes())
    assert caught.value.message == (
        "the PIM answered 503 down after 4 attempts at /api/rest/v1/attributes"
    )


def test_transport_errors_are_retried_then_name_the_base_url():
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(PimError, match=r"could not be reached .* check \[pim\] base_url"):
        client_for(handler).server_now()
    assert calls == 4


def test_malformed_json_page_is_retried():
    answers = iter(
        [
            httpx.Response(
                200,
                content=b'{"_embedded": {"items": [',
                headers={"Content-Type": "application/json"},
            ),
            httpx.Response(
                200, content=b"<html>Maintenance</html>", headers={"Content-Type": "text/html"}
            ),
            page([{"code": "color", "type": "pim_catalog_simpleselect"}]),
        ]
    )
    client = client_for(with_token(lambda _r: next(answers)))
    assert [type(i) for p in client.attributes() for i in p] == [Parsed]


def test_expired_token_is_refreshed_and_the_request_replayed():
    tokens = iter([token_response(1), token_response(2)])
    grants: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/oauth/v1/token":
            grants.append(orjson.loads(request.content))
            return next(tokens)
        if request.headers["Authorization"] == "Bearer tok1":
            return httpx.Response(401, json={"code": 401, "message": "Authentication is required"})
        return page([])

    assert list(client_for(handler).families()) == [[]]
    assert [g["grant_type"] for g in grants] == ["password", "refresh_token"]
    assert grants[1]["refresh_token"] == "ref1"


def test_bad_credentials_name_the_settings_and_never_the_secret():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            422,
            json={
                "code": 422,
                "message": 'Parameter "client_id" is missing or does not match any client',
            },
        )

    with pytest.raises(PimError) as caught:
        list(client_for(handler).attributes())
    assert "check [pim] client_id, secret, username and password" in caught.value.message
    assert "the-secret" not in caught.value.message
    assert "the-password" not in caught.value.message


@pytest.mark.parametrize(
    ("status", "setting"),
    [
        (403, "the ACLs of the role of [pim] username"),
        (404, "[pim] base_url and [pim] product_endpoint"),
    ],
)
def test_refusals_name_the_setting_to_fix(status: int, setting: str):
    client = client_for(
        with_token(lambda _r: httpx.Response(status, json={"code": status, "message": "no"}))
    )
    with pytest.raises(PimError) as caught:
        list(client.products())
    assert setting in caught.value.message
    assert caught.value.message.count("\n") == 0


def test_a_repeated_next_link_stops_instead_of_looping():
    loop = "http://pim.test/api/rest/v1/categories?page=2"
    client = client_for(with_token(lambda _r: page([], loop)))
    with pytest.raises(PimError, match="same next page twice"):
        list(client.categories())


def test_invalid_records_are_rejected_alone():
    items = [
        {"uuid": UUID, "values": {"name": [{"locale": "en_US", "scope": None, "data": "ok"}]}},
        {"uuid": "not-a-uuid", "values": {}},
        {"values": {"name": "not a list"}},
        "not even an object",
    ]
    client = client_for(with_token(lambda _r: page(items)))
    (only_page,) = list(client.products())
    assert [type(i).__name__ for i in only_page] == ["Parsed", "Rejected", "Rejected", "Rejected"]
    rejected = [i for i in only_page if isinstance(i, Rejected)]
    assert rejected[0].code == "not-a-uuid"
    assert "uuid" in rejected[0].reason
    assert rejected[1].code.startswith("invalid:")
    assert "values.name" in rejected[1].reason


def test_server_now_reads_the_date_header():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={}, headers={"Date": "Sun, 22 Nov 2026 10:00:05 GMT"})

    assert client_for(handler).server_now() == datetime(2026, 11, 22, 10, 0, 5, tzinfo=UTC)


def test_missing_date_header_refuses_to_guess():
    with pytest.raises(PimError, match="no Date header"):
        client_for(lambda _r: httpx.Response(200, json={})).server_now()


def test_options_and_variants_carry_their_parent():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/options"):
            return page([{"code": "red", "labels": {"en_US": "Red"}}])
        return page(
            [{"code": "by_size", "variant_attribute_sets": [{"level": 1, "axes": ["size"]}]}]
        )

    client = client_for(with_token(handler))
    (option,) = next(client.attribute_options("color"))
    (variant,) = next(client.family_variants("shirts"))
    assert isinstance(option, Parsed) and option.record.staging_code() == "color/red"
    assert isinstance(variant, Parsed) and variant.record.staging_code() == "shirts/by_size"


# -- list pages read by their envelope alone --------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    [',"_embedded":', ',"_embedded":{"items":[', "]}}", '"}', "\\", "é"]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
ENVELOPES = st.fixed_dictionaries(
    {"_links": st.fixed_dictionaries({"self": st.fixed_dictionaries({"href": TEXT})})},
    optional={"current_page": st.integers(1, 9), "meta": st.dictionaries(TEXT, JSON_VALUES)},
)
RECORDS = st.lists(
    st.fixed_dictionaries(
        {"code": st.sampled_from(["a", "b_1"])}, optional={"labels": JSON_VALUES}
    ),
    max_size=4,
)


def serve(answers: list[bytes]) -> tuple[PimClient, list[str]]:
    """A client reading `answers` in turn as the pages of the categories listing."""
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        return httpx.Response(200, content=answers[min(len(requested), len(answers)) - 1])

    return client_for(with_token(handler)), requested


@settings(max_examples=150, deadline=None)
@given(envelopes=st.lists(ENVELOPES, min_size=1, max_size=3), records=RECORDS)
def test_a_page_read_by_its_envelope_alone_equals_the_page_read_whole(
    envelopes: list[dict], records: list[dict]
):
    """Compact answers (as Akeneo sends them) are read by their envelope, and the records
    later; the same answers laid out otherwise are read whole. Both yield the same pages and
    follow the same links, whatever the envelope's text holds."""
    for number, envelope in enumerate(envelopes[:-1]):
        envelope["_links"]["next"] = {"href": f"http://pim.test/next?page={number + 2}"}
    compact = [orjson.dumps({**e, "_embedded": {"items": records}}) for e in envelopes]
    spaced = [json.dumps({**e, "_embedded": {"items": records}}).encode() for e in envelopes]
    pages, unparsed = {}, {}
    for layout, answers in (("compact", compact), ("spaced", spaced)):
        client, requested = serve(answers)
        listed = list(client.categories())
        unparsed[layout] = [p._raws is None for p in listed]
        pages[layout] = (listed, requested)
    # A nested "_embedded" key in the envelope sends the answer to the whole read, too.
    assert unparsed["compact"] == [b',"_embedded":' not in orjson.dumps(e) for e in envelopes]
    assert not any(unparsed["spaced"])
    assert pages["compact"] == pages["spaced"]
    assert len(pages["compact"][0]) == len(envelopes)


def test_a_compact_answer_leaves_its_records_to_whoever_prepares_the_page():
    body = {"_links": {}, "_embedded": {"items": [{"code": "shoes"}]}}
    client, _ = serve([orjson.dumps(body)])
    (only_page,) = list(client.categories())
    assert only_page._raws is None  # not parsed by the reader
    assert repr(only_page) == "Page(Category, records not read yet)"  # nor by a log line
    assert only_page.content == orjson.dumps(body)
    assert [i.record.staging_code() for i in only_page if isinstance(i, Parsed)] == ["shoes"]


def test_an_answer_damaged_behind_a_readable_envelope_stops_with_one_line():
    # Read whole it would be retried as not JSON; read by its envelope, the damage shows when
    # its records are read, and the listing stops there: nothing of the page is staged.
    client, requested = serve([b'{"_links":{},"_embedded":{"items":[{"code":"sh]}}'])
    (only_page,) = list(client.categories())
    damaged = r"^the PIM sent a page of /api/rest/v1/categories that is not JSON;"
    with pytest.raises(PimError, match=damaged):
        list(only_page)
    assert len(requested) == 1


def test_an_answer_cut_short_is_still_retried():
    whole = orjson.dumps({"_links": {}, "_embedded": {"items": [{"code": "shoes"}]}})
    client, requested = serve([whole[: len(whole) // 2], whole])
    assert [i.record.staging_code() for p in client.categories() for i in p] == ["shoes"]
    assert len(requested) == 2
