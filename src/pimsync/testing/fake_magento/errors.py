"""Magento web API errors and the response bodies the REST layer renders for them.

Magento sends the *raw* phrase (``"%1"`` or ``"%fieldName"`` placeholders) plus its arguments; a
client renders the message by substitution. `ApiError` keeps both so the fake answers exactly like
``Webapi/Rest/Response::_renderMessages`` and the bulk consumer can store the rendered text, as
Magento does in ``result_message``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import orjson

Params = list[Any] | dict[str, Any] | None

JSON_HEADERS = {"content-type": "application/json; charset=utf-8"}
HTML_HEADERS = {"content-type": "text/html; charset=utf-8"}

ROUTE_NOT_FOUND = "Request does not match any route."
UNAUTHORIZED = "The consumer isn't authorized to access %resources."
BAD_LOGIN = (
    "The account sign-in was incorrect or your account is disabled temporarily. "
    "Please wait and try again later."
)
PRODUCT_NOT_FOUND = (
    "The product that was requested doesn't exist. Verify the product and try again."
)
PRODUCT_NOT_SAVED = "The product was unable to be saved. Please try again."
URL_KEY_EXISTS = "URL key for specified store already exists."
VALUE_EMPTY = 'The "%1" attribute value is empty. Set the attribute and try again.'
DEADLOCK = "Database deadlock found when trying to get lock"
LOCK_WAIT = "Database lock wait timeout exceeded"
# What a raw PDO deadlock says when no repository wraps it (bulk status 2, "failed, can retry").
SQL_DEADLOCK = (
    "SQLSTATE[40001]: Serialization failure: 1213 Deadlock found when trying to get lock; "
    "try restarting transaction"
)
INPUT_ERRORS = "One or more input exceptions have occurred."

_PLACEHOLDER = re.compile(r"%(\w+)")


def render(message: str, parameters: Params) -> str:
    """Substitute ``%1``/``%name`` placeholders the way Magento's ``Phrase`` renderer does."""
    if not parameters:
        return message
    params = parameters

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if isinstance(params, list):
            if key.isdigit() and 0 < int(key) <= len(params):
                return str(params[int(key) - 1])
            return match.group(0)
        return str(params[key]) if key in params else match.group(0)

    return _PLACEHOLDER.sub(sub, message)


class ApiError(Exception):
    """A Magento web API error: HTTP status, raw phrase and its parameters."""

    def __init__(
        self,
        status: int,
        message: str,
        parameters: Params = None,
        *,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(render(message, parameters))
        self.status = status
        self.message = message
        self.parameters = parameters
        self.errors = errors

    @property
    def rendered(self) -> str:
        """The message with its parameters substituted (what a bulk operation reports)."""
        return str(self)

    def body(self) -> dict[str, Any]:
        """The JSON body; like Magento, keys appear only when non-empty."""
        out: dict[str, Any] = {"message": self.message}
        if self.parameters:
            out["parameters"] = self.parameters
        if self.errors:
            out["errors"] = self.errors
        return out


def route_not_found() -> ApiError:
    return ApiError(404, ROUTE_NOT_FOUND)


def unauthorized(resource: str) -> ApiError:
    return ApiError(401, UNAUTHORIZED, {"resources": resource})


def required_field(name: str) -> ApiError:
    return ApiError(400, '"%fieldName" is required. Enter and try again.', {"fieldName": name})


def invalid_field_value(field: str, value: Any) -> ApiError:
    return ApiError(
        400,
        'Invalid value of "%value" provided for the %fieldName field.',
        {"value": value, "fieldName": field},
    )


def no_such_entity(field: str, value: Any) -> ApiError:
    return ApiError(
        404,
        "No such entity with %fieldName = %fieldValue",
        {"fieldName": field, "fieldValue": value},
    )


def product_not_found() -> ApiError:
    return ApiError(404, PRODUCT_NOT_FOUND)


def value_empty(label: str) -> ApiError:
    return ApiError(400, VALUE_EMPTY, [label])


def wrong_type(value: Any, expected: str) -> ApiError:
    """``ServiceInputProcessor``'s answer when a typed field gets an uncastable value."""
    return ApiError(
        400,
        'The "%1" value\'s type is invalid. The "%2" type was expected. Verify and try again.',
        [value, expected],
    )


def unknown_property(field: str, interface: str) -> ApiError:
    """An unknown key on a data interface (patched 2.4 answers 400; older versions 500)."""
    name = "".join(part[:1].upper() + part[1:] for part in field.split("_"))
    return ApiError(
        400,
        'Property "%1" does not have accessor method "%2" in class "%3".',
        [name, f"set{name}", interface],
    )


def input_errors(problems: list[tuple[str, Params]]) -> ApiError:
    """An ``InputException``: one error is the message; several become ``errors``."""
    if len(problems) == 1:
        return ApiError(400, problems[0][0], problems[0][1])
    errors = [
        {"message": msg, "parameters": params} if params else {"message": msg}
        for msg, params in problems
    ]
    return ApiError(400, INPUT_ERRORS, errors=errors)


def deadlock(saves: str) -> ApiError:
    """A deadlock during a save: products wrap it in a clean message, categories do not."""
    if saves == "category":
        return ApiError(400, "Could not save category: %1", [SQL_DEADLOCK])
    return ApiError(400, DEADLOCK)


def internal_error() -> ApiError:
    """A non-localized exception, masked as in production mode."""
    return ApiError(
        500,
        "Internal Error. Details are available in Magento log file. Report ID: webapi-"
        + uuid.uuid4().hex[:13],
    )


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """A JSON answer; orjson keeps serialisation off the benchmark's critical path."""
    hdrs = JSON_HEADERS if headers is None else {**JSON_HEADERS, **headers}
    return httpx.Response(status, content=orjson.dumps(data), headers=hdrs)


def error_response(error: ApiError) -> httpx.Response:
    return json_response(error.status, error.body())


_HTML_TITLES = {
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Unavailable",
    504: "504 Gateway Time-out",
    429: "429 Too Many Requests",
}


def html_response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    """What nginx, PHP-FPM or a CDN in front of Magento sends: HTML, not JSON."""
    title = _HTML_TITLES.get(status, f"{status} Error")
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    hdrs = HTML_HEADERS if headers is None else {**HTML_HEADERS, **headers}
    return httpx.Response(status, content=page.encode(), headers=hdrs)
