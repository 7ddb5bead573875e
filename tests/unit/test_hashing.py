from __future__ import annotations

import unicodedata
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pimsync.staging.hashing import canonical_json, content_hash

# Records come from orjson, which reads JSON integers into 64 bits.
json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def reorder(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(v) for v in value]
    return value


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "code", "x"]), json_values, max_size=5))
def test_key_order_does_not_change_the_hash(record):
    assert content_hash(record) == content_hash(reorder(record))


@given(st.text(min_size=1, max_size=20))
def test_unicode_normalisation_does_not_change_the_hash(text):
    composed = {"name": unicodedata.normalize("NFC", text)}
    decomposed = {"name": unicodedata.normalize("NFD", text)}
    assert content_hash(composed) == content_hash(decomposed)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_formatting_is_canonical(number):
    assert canonical_json({"n": number}) == canonical_json({"n": float(repr(number))})


@given(json_values, json_values)
def test_any_value_change_changes_the_hash(one, two):
    if canonical_json({"v": one}) != canonical_json({"v": two}):
        assert content_hash({"code": "x", "v": one}) != content_hash({"code": "x", "v": two})


def test_volatile_fields_do_not_count():
    base = {"code": "jack", "values": {}, "updated": "2026-01-01T00:00:00+00:00"}
    later = {**base, "updated": "2026-02-01T00:00:00+00:00", "created": "x"}
    later["_links"] = {"self": {"href": "http://other-host/"}}
    assert content_hash(base) == content_hash(later)


def test_value_entries_and_categories_are_unordered_but_data_is_not():
    one = {
        "categories": ["b", "a"],
        "values": {
            "name": [
                {"locale": "fr_FR", "scope": None, "data": "Veste"},
                {"locale": "en_US", "scope": None, "data": "Jacket"},
            ],
            "material": [{"locale": None, "scope": None, "data": ["wool", "silk"]}],
        },
    }
    two = {
        "categories": ["a", "b"],
        "values": {
            "name": list(reversed(one["values"]["name"])),
            "material": one["values"]["material"],
        },
    }
    assert content_hash(one) == content_hash(two)
    # The order inside a value's data is the PIM's (a multiselect's order is kept as given).
    three = {
        **two,
        "values": {
            **two["values"],
            "material": [{"locale": None, "scope": None, "data": ["silk", "wool"]}],
        },
    }
    assert content_hash(three) != content_hash(two)


def test_a_changed_price_changes_the_hash():
    def product(amount: str) -> dict:
        price = [{"amount": amount, "currency": "EUR"}]
        return {"uuid": "u", "values": {"price": [{"locale": None, "scope": None, "data": price}]}}

    assert content_hash(product("10.00")) != content_hash(product("10.01"))
