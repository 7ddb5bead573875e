"""Routing primitives: the per-request `Call`, `Route` and a segment-matching `Router`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .errors import required_field, wrong_type
from .state import CatalogState
from .store import Scope

Handler = Callable[["Call"], Any]


@dataclass(slots=True)
class Call:
    """One service invocation: a synchronous request or one queued bulk operation."""

    state: CatalogState
    scope: Scope
    params: dict[str, str]
    body: Any
    query: httpx.QueryParams = field(default_factory=httpx.QueryParams)
    base_url: str = "http://localhost/"

    def part(self, key: str) -> dict[str, Any]:
        """A required object in the body (``product``, ``category``...), as the resolver needs."""
        value = self.body.get(key) if isinstance(self.body, dict) else None
        if not isinstance(value, dict):
            raise required_field(key)
        return value

    def int_param(self, name: str) -> int:
        raw = self.params[name]
        try:
            return int(raw)
        except ValueError:
            raise wrong_type(raw, "int") from None

    def body_int(self, key: str) -> int:
        value = self.body.get(key) if isinstance(self.body, dict) else None
        if value is None:
            raise required_field(key)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise wrong_type(value, "int") from None


@dataclass(frozen=True, slots=True)
class Service:
    """The service contract behind a route, for async topics and bulk result messages."""

    interface: str
    implementation: str
    method: str

    def topic(self, verb: str) -> str:
        path = self.interface.lower().replace("\\", ".")
        return f"async.{path}.{self.method.lower()}.{verb.lower()}"

    def success_message(self) -> str:
        return f"Service execution success {self.implementation}::{self.method}"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    handler: Handler
    acl: str | None
    service: Service | None
    # "product" / "category": a save that can hit a database deadlock (fault injection).
    saves: str | None
    # Top-level body keys the service needs; async/bulk requests without them fail at once.
    requires: tuple[str, ...]
    parts: tuple[str | None, ...]
    names: tuple[str, ...]

    def bulk_template(self) -> str:
        """``/V1/products/:sku`` -> ``/V1/products/bySku`` (Magento's bulk path convention)."""
        return "/".join(
            f"by{p[1:2].upper()}{p[2:]}" if p.startswith(":") else p
            for p in self.template.split("/")
        )


class Router:
    """Matches decoded path segments; literal segments win over parameters.

    Magento also answers a wrong HTTP method with 404 "Request does not match any route.", so a
    miss is a miss whatever the cause.
    """

    def __init__(self) -> None:
        self._table: dict[tuple[str, int], list[Route]] = {}
        self._bulk: dict[tuple[str, tuple[str, ...]], Route] = {}

    def add(
        self,
        method: str,
        template: str,
        handler: Handler,
        acl: str | None,
        service: Service | None = None,
        saves: str | None = None,
        requires: tuple[str, ...] = (),
    ) -> None:
        segs = template.strip("/").split("/")
        parts = tuple(None if s.startswith(":") else s for s in segs)
        names = tuple(s[1:] for s in segs if s.startswith(":"))
        route = Route(method, template, handler, acl, service, saves, requires, parts, names)
        bucket = self._table.setdefault((method, len(parts)), [])
        bucket.append(route)
        bucket.sort(key=lambda r: len(r.names))
        if service is not None and method in ("POST", "PUT", "DELETE"):
            bulk_segs = tuple(route.bulk_template().strip("/").split("/"))
            self._bulk[(method, bulk_segs)] = route

    def match(self, method: str, segments: list[str]) -> tuple[Route, dict[str, str]] | None:
        for route in self._table.get((method, len(segments)), ()):
            params: dict[str, str] = {}
            names = iter(route.names)
            for want, got in zip(route.parts, segments, strict=True):
                if want is None:
                    if not got:
                        break
                    params[next(names)] = got
                elif want != got:
                    break
            else:
                return route, params
        return None

    def match_bulk(self, method: str, segments: list[str]) -> Route | None:
        return self._bulk.get((method, tuple(segments)))

    def routes(self) -> list[Route]:
        return [r for bucket in self._table.values() for r in bucket]
