"""The content hash is canonical: how a record is presented never changes it, what it says does.

Presentation: key order at any depth, Unicode normalisation (a PIM re-saving the same text in NFD
must not trigger a Magento update), the order of lists that mean sets (categories, value entries),
volatile fields, and how a number is spelled in the JSON text (1.5, 1.50, 15e-1 parse to the same
float). Content: any other change, anywhere, changes the hash.

One decision is pinned here: the integer 1 and the float 1.0 hash differently. They are different
values for pimsync, not two spellings of one: a number attribute reaches Magento as `str(data)`,
so "1" and "1.0" are different text in the shop.

The unit tests in tests/unit/test_hashing.py cover flat records; these run realistic Akeneo
records and arbitrary JSON with non-ASCII keys, which is where version 1 went wrong (it sorted keys
before normalising, so "é" decomposed sorted before "f" and composed after it).
"""

from __future__ import annotations

import random
import unicodedata
from decimal import Decimal
from typing import Any, Literal

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from pimsync import pipeline
from pimsync.staging.hashing import HASH_VERSION, VOLATILE_KEYS, content_hash
from pimsync.staging.tables import entity_tables
from tests.reliability.support import build_app, create, status_counts

PROPERTIES = settings(max_examples=100, deadline=None)
RECORDS = settings(max_examples=25, deadline=None)  # a product costs far more to generate

# Text with accents and combining marks, so NFC and NFD differ often.
letters = st.sampled_from(
    ["a", "e", "é", "e\u0301", "ß", "Å", "A\u030a", "ñ", "n\u0303", "日", "f"]
)
words = st.lists(letters, max_size=6).map("".join) | st.text(max_size=8)
codes = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
numbers = st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
data = st.one_of(
    words,
    numbers,
    st.booleans(),
    st.none(),
    st.lists(codes, max_size=3),  # a multiselect: its order is the PIM's and counts
    st.fixed_dictionaries({"amount": numbers.map(str), "unit": codes}),  # a metric
    st.lists(st.fixed_dictionaries({"amount": numbers.map(str), "currency": codes}), max_size=2),
)
entry = st.fixed_dictionaries(
    {
        "locale": st.sampled_from([None, "en_US", "fr_FR", "de_DE"]),
        "scope": st.sampled_from([None, "ecommerce", "print"]),
        "data": data,
    }
)
products = st.fixed_dictionaries(
    {
        "uuid": st.uuids().map(str),
        "enabled": st.booleans(),
        "family": codes,
        "parent": st.none() | codes,
        "categories": st.lists(codes, max_size=4, unique=True),
        "groups": st.lists(codes, max_size=2, unique=True),
        "values": st.dictionaries(
            codes,
            st.lists(entry, min_size=1, max_size=3, unique_by=lambda e: (e["locale"], e["scope"])),
            max_size=4,
        ),
        "associations": st.dictionaries(
            codes, st.fixed_dictionaries({"products": st.lists(codes)})
        ),
    },
    optional={"labels": st.dictionaries(st.sampled_from(["en_US", "fr_FR"]), words)},
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=12,
)


def normalise(value: Any, form: Literal["NFC", "NFD"]) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize(form, value)
    if isinstance(value, list):
        return [normalise(item, form) for item in value]
    if isinstance(value, dict):
        return {normalise(key, form): normalise(item, form) for key, item in value.items()}
    return value


def shuffled_keys(value: Any, rng: random.Random) -> Any:
    if isinstance(value, list):
        return [shuffled_keys(item, rng) for item in value]
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: shuffled_keys(value[key], rng) for key in keys}
    return value


def presented_otherwise(record: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The same product as a PIM may send it another time."""
    form: Literal["NFC", "NFD"] = "NFD" if rng.random() < 0.5 else "NFC"
    other: dict[str, Any] = shuffled_keys(normalise(record, form), rng)
    for key in ("categories", "groups"):
        rng.shuffle(other[key])
    for entries in other["values"].values():
        rng.shuffle(entries)
    other["updated"] = f"2026-0{rng.randint(1, 9)}-01T00:00:00+00:00"
    other["_links"] = {"self": {"href": f"http://pim-{rng.randint(1, 9)}/x"}}
    return other


@RECORDS
@given(record=products, seed=st.integers(0, 2**32))
def test_a_product_presented_otherwise_hashes_the_same(record, seed):
    assert content_hash(record) == content_hash(presented_otherwise(record, random.Random(seed)))


@PROPERTIES
@given(value=json_values, seed=st.integers(0, 2**32))
@example(value={"é": 1, "f": 2}, seed=0)  # version 1 sorted these differently in NFD
def test_any_json_in_nfd_and_shuffled_hashes_as_in_nfc(value, seed):
    record = {"code": "x", "v": value}
    nfd = shuffled_keys(normalise(record, "NFD"), random.Random(seed))
    assert content_hash(normalise(record, "NFC")) == content_hash(nfd)


def spellings(number: float) -> list[str]:
    """JSON texts of one float: shortest, fixed-point, mantissa and exponent, padded."""
    shortest = Decimal(repr(number))
    sign, digits, exponent = shortest.as_tuple()
    assert isinstance(exponent, int)
    mantissa = ("-" if sign else "") + "".join(map(str, digits))
    texts = [repr(number), f"{shortest:f}", f"{mantissa}e{exponent}"]
    if any(digits):  # "00e-2" is no JSON number
        texts.append(f"{mantissa}0e{exponent - 1}")
    return [t if any(c in t for c in ".eE") else f"{t}.0" for t in texts]  # never an integer


@PROPERTIES
@given(number=st.floats(allow_nan=False, allow_infinity=False))
@example(number=1.0)
@example(number=0.1)
def test_a_number_spelled_otherwise_in_the_json_text_hashes_the_same(number):
    hashes = {content_hash(orjson.loads(f'{{"n": {text}}}')) for text in spellings(number)}
    assert len(hashes) == 1, spellings(number)


def test_an_integer_and_the_same_float_are_different_values():
    assert content_hash(orjson.loads('{"n": 1.0}')) == content_hash(orjson.loads('{"n": 1.00}'))
    assert content_hash(orjson.loads('{"n": 1}')) != content_hash(orjson.loads('{"n": 1.0}'))


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every scalar of a record, outside the volatile fields."""
    if isinstance(value, dict):
        return [
            p
            for key, item in value.items()
            if key not in VOLATILE_KEYS
            for p in leaves(item, (*path, key))
        ]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in leaves(item, (*path, index))]
    return [path]


def changed_at(record: Any, path: tuple[Any, ...], new: Any) -> Any:
    copy = orjson.loads(orjson.dumps(record))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copy


@RECORDS
@given(record=products, choice=st.data())
def test_any_change_of_content_changes_the_hash(record, choice):
    paths = leaves(record)
    path = choice.draw(st.sampled_from(paths))
    current: Any = record
    for step in path:
        current = current[step]
    new = choice.draw(
        st.one_of(words, numbers, st.booleans(), st.none()).filter(
            lambda v: (
                normalise(v, "NFC") != normalise(current, "NFC") or type(v) is not type(current)
            )
        )
    )
    assert content_hash(changed_at(record, path, new)) != content_hash(record)


@RECORDS
@given(record=products, choice=st.data())
def test_an_added_or_removed_value_changes_the_hash(record, choice):
    other = orjson.loads(orjson.dumps(record))
    if record["values"] and choice.draw(st.booleans()):
        del other["values"][choice.draw(st.sampled_from(sorted(record["values"])))]
    else:
        code = choice.draw(codes.filter(lambda c: c not in record["values"]))
        other["values"][code] = [{"locale": None, "scope": None, "data": None}]
    assert content_hash(other) != content_hash(record)


def test_a_hash_version_change_rewrites_staging_once_and_sends_nothing(staging, push_pim, magento):
    """Records unaffected by a canonical-form change hash as before: after a HASH_VERSION bump
    the next import rewrites every row (as changed back to what was pushed: synced), and the
    next push has nothing to send."""
    app = build_app(staging, push_pim, magento)
    assert create(app).exit_code == 0
    with app.repository() as repo:
        for table in entity_tables.values():
            repo.connection.execute(update(table).values(hash_version=HASH_VERSION - 1))
        repo.commit()
    report = pipeline.run_full_import(app)
    assert all(feed.changed == feed.fetched for feed in report.feeds.values())
    for entity in ("attributes", "categories", "products"):
        assert set(status_counts(app, entity)) == {"synced"}, entity
    # Rewritten variants count as changed, so their configurables are re-checked: the push
    # computes their payloads again, finds them unchanged, and writes nothing.
    magento.reset_stats()
    pushed = create(app)
    assert pushed.exit_code == 0
    assert sum(feed.unchanged for feed in pushed.feeds.values()) > 0
    assert sum(magento.request_count(method) for method in ("POST", "PUT", "DELETE")) == 0
    assert set(status_counts(app, "product_models")) == {"synced"}
    app.close()


def test_text_saved_again_in_nfd_changes_nothing_downstream(staging, push_pim, magento):
    """End to end: the PIM re-saves every name in NFD; the import sees no change."""
    app = build_app(staging, push_pim, magento)
    assert create(app).exit_code == 0
    app.close()

    def decomposing(request):
        response = push_pim(request)
        if response.headers.get("content-type", "").startswith("application/json"):
            body = normalise(orjson.loads(response.content), "NFD")
            response = type(response)(200, content=orjson.dumps(body), headers=response.headers)
        return response

    resaved = build_app(staging, decomposing, magento)
    report = pipeline.run_full_import(resaved)
    assert report.feeds["products"].changed == 0
    assert report.feeds["products"].unchanged == report.feeds["products"].fetched
    magento.reset_stats()
    assert create(resaved).exit_code == 0
    assert magento.request_count() == 0
    resaved.close()
