"""The mock PIM's routing, its OAuth token endpoint, and the catalog-structure and media endpoints.

Endpoints register with `@route(template, *methods)`; each takes a `Call` (the `FakePim`, the
request, its base URL, query parameters, path arguments and decoded JSON body) and returns an
`httpx.Response`. Errors are raised as `ApiError`, which `FakePim` turns into Akeneo's error JSON.
Product and product-model endpoints live in `fake_pim_items`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import httpx
import orjson

from pimsync.testing.fake_pim_render import API, structure_item
from pimsync.testing.fake_pim_search import (
    ApiError,
    envelope,
    pagination,
    parse_json_search,
    unsupported,
)
from pimsync.testing.fake_pim_structure import JSON

if TYPE_CHECKING:
    from pimsync.testing.fake_pim import FakePim

TOKEN_PATH = "/api/oauth/v1/token"
REFRESH_TTL = 14 * 86400  # Akeneo's default refresh-token lifetime


@dataclass(frozen=True, slots=True)
class Call:
    pim: FakePim
    request: httpx.Request
    base: str
    params: dict[str, str]
    pairs: list[tuple[str, str]]
    args: dict[str, str]
    body: Any  # the decoded JSON body of a POST/PATCH, else None

    @property
    def path(self) -> str:
        return self.request.url.path


Endpoint = Callable[[Call], httpx.Response]


@dataclass(frozen=True, slots=True)
class Route:
    template: str
    endpoint: Endpoint | None  # None: the path exists, but not for this HTTP method
    methods: tuple[str, ...]
    args: dict[str, str]
    auth: bool  # needs a bearer token
    raw: bool  # takes a non-JSON body (token) or answers with a non-JSON body (download)


_ROUTES: list[tuple[re.Pattern[str], str, dict[str, Endpoint], bool, bool]] = []


def route(
    template: str, *methods: str, auth: bool = True, raw: bool = False
) -> Callable[[Endpoint], Endpoint]:
    """Register an endpoint; `{name}` matches one path segment, `{name+}` several."""

    def register(endpoint: Endpoint) -> Endpoint:
        for _, known, table, _, _ in _ROUTES:
            if known == template:
                table.update(dict.fromkeys(methods, endpoint))
                return endpoint
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        pattern = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+)", pattern)
        _ROUTES.append((re.compile(pattern), template, dict.fromkeys(methods, endpoint), auth, raw))
        return endpoint

    return register


def match(method: str, path: str) -> Route | None:
    for pattern, template, table, auth, raw in _ROUTES:
        found = pattern.fullmatch(path)
        if found:
            return Route(template, table.get(method), tuple(table), found.groupdict(), auth, raw)
    return None


def respond(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    """A JSON answer (or an empty one when `body` is None)."""
    if body is None:
        return httpx.Response(status, headers=headers)
    headers = {"Content-Type": "application/json", **(headers or {})}
    return httpx.Response(status, content=orjson.dumps(body), headers=headers)


def saved(c: Call, created: bool, location: str) -> httpx.Response:
    """201 or 204 with the resource's `Location`, as Akeneo answers writes."""
    return respond(201 if created else 204, headers={"Location": f"{c.base}{API}/{location}"})


# -- authentication ---------------------------------------------------------------------------


class Tokens:
    """Issued access and refresh tokens, with their expiry on the mock clock (epoch seconds)."""

    def __init__(self, ttl: int, salt: str) -> None:
        self.ttl, self.salt, self.issued = ttl, salt, 0
        self.access: dict[str, int] = {}
        self.refresh: dict[str, int] = {}

    def valid(self, token: str, now: int) -> bool:
        return now < self.access.get(token, 0)

    def redeem(self, refresh_token: str, now: int) -> bool:
        """Use up a refresh token; False if unknown or expired."""
        return now < self.refresh.pop(refresh_token, 0)

    def issue(self, now: int) -> JSON:
        if len(self.access) > 10_000:  # keep the stores bounded over long runs
            self.access = {t: e for t, e in self.access.items() if e > now}
            self.refresh = {t: e for t, e in self.refresh.items() if e > now}
        access, refresh = self._new(), self._new()
        self.access[access], self.refresh[refresh] = now + self.ttl, now + REFRESH_TTL
        return {
            "access_token": access,
            "expires_in": self.ttl,
            "token_type": "bearer",
            "scope": None,
            "refresh_token": refresh,
        }

    def _new(self) -> str:
        """Akeneo-looking (base64 of hex), unique, and the same from run to run."""
        self.issued += 1
        digest = hashlib.sha256(f"{self.salt}:{self.issued}".encode()).hexdigest()
        return base64.b64encode(digest.encode()).decode().rstrip("=")


_MISSING_PARAMETER = 'Parameter "grant_type", "username" or "password" is missing, empty or invalid'


@route(TOKEN_PATH, "POST", auth=False, raw=True)
def token(c: Call) -> httpx.Response:
    """The OAuth2 token endpoint: password and refresh_token grants, JSON or form body."""
    pim, request = c.pim, c.request
    try:
        if "json" in request.headers.get("content-type", ""):
            data = orjson.loads(request.content or b"{}")
        else:
            data = dict(parse_qsl(request.content.decode()))
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "Invalid json message received") from None
    if not isinstance(data, dict):
        raise ApiError(400, "Invalid json message received")
    grant = data.get("grant_type")
    if not grant:
        raise ApiError(422, _MISSING_PARAMETER)
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    try:
        client = base64.b64decode(credentials, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        client = ""
    if scheme.lower() != "basic" or client != f"{pim.client_id}:{pim.secret}":
        raise ApiError(
            422,
            'Parameter "client_id" is missing or does not match any client, or secret is invalid',
        )
    now = pim.now()
    if grant == "password":
        if not data.get("username") or not data.get("password"):
            raise ApiError(422, _MISSING_PARAMETER)
        if (data["username"], data["password"]) != (pim.username, pim.password):
            raise ApiError(422, "No user found for the given username and password")
    elif grant == "refresh_token":
        if not data.get("refresh_token"):
            raise ApiError(422, 'Parameter "grant_type" or "refresh_token" is missing or empty')
        if not pim.tokens.redeem(str(data["refresh_token"]), now):
            raise ApiError(422, "Refresh token is invalid or has expired")
    elif grant in ("client_credentials", "authorization_code"):
        raise ApiError(422, "This grant type is not authorized for this client")
    else:
        raise ApiError(422, "Invalid grant_type parameter or parameter missing")
    return respond(200, pim.tokens.issue(now))


@route(API, "GET", auth=False)
def endpoints(c: Call) -> httpx.Response:
    """The endpoint list (no token needed)."""
    routes = {
        "pim_api_" + re.sub(r"\W+", "_", template[len(API) + 1 :]).strip("_"): {
            "route": template.replace("+}", "}"),
            "methods": list(table),
        }
        for _, template, table, auth, _ in _ROUTES
        if auth
    }
    token_route = {"route": TOKEN_PATH, "methods": ["POST"]}
    return respond(
        200,
        {
            "host": c.base,
            "authentication": {"fos_oauth_server_token": token_route},
            "routes": routes,
        },
    )


# -- catalog structure ------------------------------------------------------------------------

Check = Callable[[JSON], bool]


def _structure_filter(c: Call, allowed: dict[str, set[str]]) -> Check:
    """`code IN`, `updated >` (ISO-8601), `type IN`, `parent =`, `is_root =`, `enabled =`."""
    checks: list[Check] = []
    for prop, rules in parse_json_search(c.params.get("search")).items():
        for rule in rules:
            op, value = rule["operator"], rule.get("value")
            if op not in allowed.get(prop, set()):
                raise unsupported(prop, op)
            if prop == "updated":
                try:
                    when = datetime.fromisoformat(str(value))
                except ValueError:
                    raise ApiError(
                        422,
                        'Property "updated" expects a string with the ISO 8601 '
                        f'format, "{value}" given.',
                    ) from None
                when = when if when.tzinfo else when.replace(tzinfo=c.pim.tz)
                checks.append(_newer(when.timestamp()))
            elif prop == "is_root":
                checks.append(_among("parent", {None}, keep=bool(value)))
            elif op == "IN":
                if not isinstance(value, list):
                    raise ApiError(422, f'Property "{prop}" expects an array as data.')
                checks.append(_among(prop, set(value)))
            else:
                checks.append(_among(prop, {value}))
    return lambda item: all(check(item) for check in checks)


def _newer(ts: float) -> Check:
    return lambda item: bool(item["updated"] > ts)


def _among(prop: str, values: set[Any], keep: bool = True) -> Check:
    return lambda item: (item.get(prop) in values) is keep


def _list(
    c: Call,
    resource: str,
    items: Iterable[JSON],
    self_path: Callable[[JSON], str],
    *,
    hidden: tuple[str, ...] = (),
    filters: dict[str, set[str]] | None = None,
) -> httpx.Response:
    """A page-paginated list of structure items (Akeneo serves these from the database)."""
    _, limit, page = pagination(c.params, search_after=False)
    keep = _structure_filter(c, filters or {})
    selected = [item for item in items if keep(item)]
    view = c.pim.view(links=True)
    chunk = selected[(page - 1) * limit : page * limit]
    out = [structure_item(i, view, self_path(i), hidden) for i in chunk]
    c.pim.items_served[resource] += len(out)
    count = len(selected) if c.params.get("with_count") == "true" else None
    return respond(
        200,
        envelope(c.base, c.path, c.pairs, out, kind="page", limit=limit, page=page, count=count),
    )


def _one(
    c: Call, resource: str, item: JSON | None, message: str, hidden: tuple[str, ...] = ()
) -> httpx.Response:
    if item is None:
        raise ApiError(404, message)
    c.pim.items_served[resource] += 1
    return respond(200, structure_item(item, c.pim.view(), None, hidden))


@route(f"{API}/attributes", "GET")
def attributes(c: Call) -> httpx.Response:
    filters = {"code": {"IN"}, "updated": {">"}, "type": {"IN"}}
    items = c.pim.catalog.structure.attributes.values()
    return _list(c, "attributes", items, lambda a: f"attributes/{a['code']}", filters=filters)


@route(f"{API}/attributes/{{code}}", "GET")
def attribute(c: Call) -> httpx.Response:
    code = c.args["code"]
    item = c.pim.catalog.structure.attributes.get(code)
    return _one(c, "attributes", item, f'Attribute "{code}" does not exist.')


def _options_of(c: Call) -> dict[str, JSON]:
    code, structure = c.args["attribute"], c.pim.catalog.structure
    if code not in structure.attributes:
        raise ApiError(404, f'Attribute "{code}" does not exist.')
    if code not in structure.options:
        raise ApiError(
            404,
            f'Attribute "{code}" does not support options. Only attributes of '
            'type "pim_catalog_simpleselect", "pim_catalog_multiselect" support '
            "options.",
        )
    return structure.options[code]


@route(f"{API}/attributes/{{attribute}}/options", "GET")
def attribute_options(c: Call) -> httpx.Response:
    options = sorted(_options_of(c).values(), key=lambda o: o["sort_order"])
    return _list(
        c,
        "attribute_options",
        options,
        lambda o: f"attributes/{o['attribute']}/options/{o['code']}",
    )


@route(f"{API}/attributes/{{attribute}}/options/{{code}}", "GET")
def attribute_option(c: Call) -> httpx.Response:
    code, attribute = c.args["code"], c.args["attribute"]
    message = (
        f'Attribute option "{code}" does not exist or is not an option of the attribute '
        f'"{attribute}".'
    )
    return _one(c, "attribute_options", _options_of(c).get(code), message)


@route(f"{API}/attributes/{{attribute}}/options/{{code}}", "PATCH")
def patch_attribute_option(c: Call) -> httpx.Response:
    _options_of(c)
    attribute, code = c.args["attribute"], c.args["code"]
    created = c.pim.writer.write_option(attribute, code, c.body)
    return saved(c, created, f"attributes/{attribute}/options/{code}")


@route(f"{API}/families", "GET")
def families(c: Call) -> httpx.Response:
    items = c.pim.catalog.structure.families.values()
    return _list(
        c,
        "families",
        items,
        lambda f: f"families/{f['code']}",
        hidden=("updated",),
        filters={"code": {"IN"}, "updated": {">"}},
    )


@route(f"{API}/families/{{code}}", "GET")
def family(c: Call) -> httpx.Response:
    code = c.args["code"]
    item = c.pim.catalog.structure.families.get(code)
    return _one(c, "families", item, f'Family "{code}" does not exist.', ("updated",))


def _variants_of(c: Call) -> list[JSON]:
    code = c.args["family"]
    if code not in c.pim.catalog.structure.families:
        raise ApiError(404, f'Family "{code}" does not exist.')
    return [v for v in c.pim.catalog.structure.variants.values() if v["family"] == code]


@route(f"{API}/families/{{family}}/variants", "GET")
def family_variants(c: Call) -> httpx.Response:
    return _list(
        c,
        "family_variants",
        _variants_of(c),
        lambda v: f"families/{v['family']}/variants/{v['code']}",
        hidden=("family",),
    )


@route(f"{API}/families/{{family}}/variants/{{code}}", "GET")
def family_variant(c: Call) -> httpx.Response:
    code = c.args["code"]
    found = next((v for v in _variants_of(c) if v["code"] == code), None)
    message = (
        f'Family variant "{code}" does not exist or is not a variant of the family '
        f'"{c.args["family"]}".'
    )
    return _one(c, "family_variants", found, message, ("family",))


@route(f"{API}/categories", "GET")
def categories(c: Call) -> httpx.Response:
    items = list(c.pim.catalog.structure.categories.values())
    if c.params.get("with_position") == "true":
        siblings: dict[str | None, list[str]] = {}
        for item in items:
            siblings.setdefault(item["parent"], []).append(item["code"])
        items = [{**i, "position": siblings[i["parent"]].index(i["code"]) + 1} for i in items]
    filters = {"code": {"IN"}, "updated": {">"}, "parent": {"="}, "is_root": {"="}}
    return _list(c, "categories", items, lambda i: f"categories/{i['code']}", filters=filters)


@route(f"{API}/categories/{{code}}", "GET")
def category(c: Call) -> httpx.Response:
    code = c.args["code"]
    item = c.pim.catalog.structure.categories.get(code)
    return _one(c, "categories", item, f'Category "{code}" does not exist.')


@route(f"{API}/categories/{{code}}", "PATCH")
def patch_category(c: Call) -> httpx.Response:
    created = c.pim.writer.write_category(c.args["code"], c.body, c.pim.now())
    return saved(c, created, f"categories/{c.args['code']}")


def _simple(resource: str, label: str, filters: dict[str, set[str]]) -> None:
    """Register the list and get endpoints of channels, locales and currencies."""

    def items(c: Call) -> dict[str, JSON]:
        found: dict[str, JSON] = getattr(c.pim.catalog.structure, resource)
        return found

    @route(f"{API}/{resource}", "GET")
    def listing(c: Call) -> httpx.Response:
        path: Callable[[JSON], str] = lambda i: f"{resource}/{i['code']}"  # noqa: E731
        return _list(c, resource, items(c).values(), path, filters=filters)

    @route(f"{API}/{resource}/{{code}}", "GET")
    def one(c: Call) -> httpx.Response:
        code = c.args["code"]
        return _one(c, resource, items(c).get(code), f'{label} "{code}" does not exist.')


_simple("channels", "Channel", {})
_simple("locales", "Locale", {"enabled": {"="}})
_simple("currencies", "Currency", {"enabled": {"="}})


@route(f"{API}/measurement-families", "GET")
def measurement_families(c: Call) -> httpx.Response:
    """Not paginated: Akeneo answers a plain array here."""
    return respond(200, c.pim.catalog.structure.measurement_families)


# -- media files --------------------------------------------------------------------------------


def _media_json(c: Call, code: str, index: int, content: bytes, *, in_list: bool) -> JSON:
    links: JSON = {"download": {"href": f"{c.base}{API}/media-files/{code}/download"}}
    if in_list:
        links = {"self": {"href": f"{c.base}{API}/media-files/{code}"}, **links}
    item = {
        "code": code,
        "original_filename": f"SKU-{index:07d}.jpg",
        "mime_type": "image/jpeg",
        "size": len(content),
        "extension": "jpg",
    }
    return {"_links": links, **item} if in_list else {**item, "_links": links}


@route(f"{API}/media-files", "GET")
def media_files(c: Call) -> httpx.Response:
    _, limit, page = pagination(c.params, search_after=False)
    catalog = c.pim.catalog
    total = catalog.media_count()
    positions = range((page - 1) * limit, min(page * limit, total))
    items = [_media_json(c, *catalog.media_at(p), in_list=True) for p in positions]
    c.pim.items_served["media_files"] += len(items)
    count = total if c.params.get("with_count") == "true" else None
    return respond(
        200,
        envelope(c.base, c.path, c.pairs, items, kind="page", limit=limit, page=page, count=count),
    )


def _media(c: Call) -> tuple[int, bytes]:
    found = c.pim.catalog.media(c.args["code"])
    if found is None:
        raise ApiError(404, f'Media file "{c.args["code"]}" does not exist.')
    return found


# Registered before `media-files/{code+}`, which would also match `.../download`.
@route(f"{API}/media-files/{{code+}}/download", "GET", raw=True)
def media_download(c: Call) -> httpx.Response:
    index, content = _media(c)
    c.pim.items_served["media_downloads"] += 1
    headers = {
        "Content-Type": "image/jpeg",
        "Content-Disposition": f'attachment; filename="SKU-{index:07d}.jpg"',
    }
    return httpx.Response(200, content=content, headers=headers)


@route(f"{API}/media-files/{{code+}}", "GET")
def media_file(c: Call) -> httpx.Response:
    index, content = _media(c)
    c.pim.items_served["media_files"] += 1
    return respond(200, _media_json(c, c.args["code"], index, content, in_list=False))
