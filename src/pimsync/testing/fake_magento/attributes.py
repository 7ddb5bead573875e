"""Product attributes and their options (``ProductAttributeRepositoryInterface``,
``ProductAttributeOptionManagementInterface``).

Traps reproduced: option add answers the new id as a JSON *string* (or older versions' values,
see `Settings.option_add_result`); option GETs start with a blank ``{"label": " ", "value": ""}``
and show the request store's labels; a new attribute is in no attribute set, so product values
for it are silently dropped until it is assigned.
"""

from __future__ import annotations

import re
from typing import Any

from .context import Call
from .errors import ApiError, invalid_field_value, required_field
from .search import parse_criteria, search
from .state import PRODUCT_ENTITY_TYPE, CatalogState, slugify
from .store import Attribute, Option

INPUT_BACKENDS = {
    "text": "varchar", "textarea": "text", "texteditor": "text", "date": "datetime",
    "datetime": "datetime", "boolean": "int", "multiselect": "varchar", "select": "int",
    "price": "decimal", "weight": "decimal", "media_image": "varchar", "gallery": "varchar",
    "swatch_visual": "int", "swatch_text": "int",
}  # fmt: skip
_CORE_KEYS = frozenset(
    ("attribute_id", "attribute_code", "frontend_input", "entity_type_id", "is_required",
     "options", "is_user_defined", "default_frontend_label", "frontend_labels", "backend_type",
     "is_unique", "scope", "default_value", "validation_rules", "extension_attributes",
     "custom_attributes")
)  # fmt: skip
_CODE = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*")
_GENERATED = re.compile(r"[a-z][a-z_0-9]{0,29}[a-z0-9]")
NOT_FOUND = (
    'The attribute with a "%1" attributeCode doesn\'t exist. Verify the attribute and try again.'
)
NO_OPTIONS = 'The "%1" attribute doesn\'t work with options.'
EMPTY_LABEL = "The attribute option label is empty. Enter the value and try again."
DUPLICATE_LABEL = 'Admin store attribute option label "%1" already exists.'


def option_views(attr: Attribute, store_id: int) -> list[dict[str, Any]]:
    """Options as ``getAllOptions()`` lists them at one store (blank first for table options)."""
    if attr.fixed_options:
        return [{"label": label, "value": value} for label, value in attr.fixed_options]
    if not attr.has_table_options:
        return []
    ordered = sorted(attr.options.values(), key=lambda o: (o.sort_order, o.id))
    return [{"label": " ", "value": ""}] + [
        {"label": o.store_labels.get(store_id) or o.label, "value": str(o.id)} for o in ordered
    ]


def attribute_view(attr: Attribute, store_id: int = 0) -> dict[str, Any]:
    return {
        **attr.extra,
        "attribute_id": attr.id,
        "attribute_code": attr.code,
        "frontend_input": attr.frontend_input,
        "entity_type_id": str(PRODUCT_ENTITY_TYPE),
        "is_required": attr.is_required,
        "options": option_views(attr, store_id),
        "is_user_defined": attr.is_user_defined,
        "default_frontend_label": attr.label,
        "frontend_labels": [{"store_id": s, "label": lbl} for s, lbl in attr.store_labels.items()],
        "backend_type": attr.backend_type,
        "is_unique": "1" if attr.is_unique else "0",
        "scope": attr.scope,
        "default_value": attr.default_value or "",
        "validation_rules": [],
    }


def lookup(state: CatalogState, code: str) -> Attribute:
    attr = state.attribute(code)
    if attr is None:
        raise ApiError(404, NOT_FOUND, [code])
    return attr


def _label(data: dict[str, Any]) -> str:
    label = str(data.get("default_frontend_label") or "").strip()
    if not label:
        for item in data.get("frontend_labels") or ():
            if isinstance(item, dict) and str(item.get("label") or "").strip():
                return str(item["label"]).strip()
    return label


def _generate_code(label: str) -> str:
    """``ProductAttributeRepository::generateCode``: the code Magento invents from the label."""
    code = slugify(label).replace("-", "_")[:30]
    return code if _GENERATED.fullmatch(code) else f"attr_{code or 'generated'}"


def _add_option(state: CatalogState, attr: Attribute, raw: dict[str, Any]) -> Option:
    label = str(raw.get("label") or "").strip()
    if not label:
        raise ApiError(400, EMPTY_LABEL)
    # Table::getOptionId matches the label case-insensitively, or an option *id* equal to it.
    for opt in attr.options.values():
        if opt.label.lower() == label.lower() or str(opt.id) == label:
            raise ApiError(400, DUPLICATE_LABEL, [raw.get("label")])
    option = Option(
        next(state.option_ids),
        label,
        int(raw.get("sort_order") or 0),
        bool(raw.get("is_default", False)),
        {
            int(s["store_id"]): str(s["label"])
            for s in raw.get("store_labels") or ()
            if isinstance(s, dict) and s.get("store_id") and s.get("label")
        },
    )
    attr.options[option.id] = option
    if option.is_default:
        attr.default_value = str(option.id)
    return option


def _apply(attr: Attribute, data: dict[str, Any], label: str) -> None:
    if label:
        attr.label = label
    for item in data.get("frontend_labels") or ():
        if isinstance(item, dict) and item.get("store_id") is not None and item.get("label"):
            attr.store_labels[int(item["store_id"])] = str(item["label"])
    if "is_required" in data:
        attr.is_required = bool(data["is_required"])
    if "is_unique" in data:
        attr.is_unique = str(data["is_unique"]) in ("1", "True", "true")
    if data.get("default_value") is not None:
        attr.default_value = str(data["default_value"])
    if data.get("scope"):
        if data["scope"] not in ("global", "website", "store"):
            raise invalid_field_value("scope", data["scope"])
        attr.scope = str(data["scope"])
    attr.extra.update({k: v for k, v in data.items() if k not in _CORE_KEYS})


def save_attribute(call: Call, *, create: bool) -> dict[str, Any]:
    """``POST /V1/products/attributes`` (create) and ``PUT .../{attributeCode}`` (upsert)."""
    state = call.state
    data = call.part("attribute")
    code = str(data.get("attribute_code") or call.params.get("attributeCode") or "")
    existing = state.attribute(code) if code else None
    label = _label(data)
    if existing is not None:
        if create:
            raise ApiError(400, "An attribute with the same code (%1) already exists.", [code])
        _apply(existing, data, label)
        for raw in data.get("options") or ():
            known = {o.label.lower() for o in existing.options.values()}
            if isinstance(raw, dict) and str(raw.get("label") or "").strip().lower() not in known:
                _add_option(state, existing, raw)
        return attribute_view(existing, call.scope.store_id)
    if not label:
        raise required_field("frontend_label")
    code = code or _generate_code(label)
    if not 1 <= len(code) <= 60:
        raise ApiError(
            400, "An attribute code must not be less than %1 and more than %2 characters.", [1, 60]
        )
    if not _CODE.fullmatch(code):
        raise ApiError(
            400,
            'Attribute code "%1" is invalid. Please use only letters (a-z or A-Z), numbers (0-9) '
            "or underscore (_) in this field, and the first character should be a letter.",
            [code],
        )
    frontend_input = str(data.get("frontend_input") or "text")
    if frontend_input not in INPUT_BACKENDS:
        raise invalid_field_value("frontend_input", frontend_input)
    # The catalog_eav_attribute.is_global column defaults to 1: no scope given means global.
    attr = Attribute(
        next(state.attribute_id_seq), code, frontend_input, "global", label,
        str(data.get("backend_type") or INPUT_BACKENDS[frontend_input]),
    )  # fmt: skip
    _apply(attr, data, label)
    if attr.has_table_options:
        for raw in data.get("options") or ():
            if isinstance(raw, dict) and str(raw.get("label") or "").strip():
                _add_option(state, attr, raw)
    state.add_attribute(attr)
    return attribute_view(attr, call.scope.store_id)


def get_attribute(call: Call) -> dict[str, Any]:
    return attribute_view(lookup(call.state, call.params["attributeCode"]), call.scope.store_id)


def list_attributes(call: Call) -> dict[str, Any]:
    store_id = call.scope.store_id

    def field(attr: Attribute, name: str) -> Any:
        return attribute_view(attr).get(name)

    items = sorted(call.state.attributes.values(), key=lambda a: a.id)
    return search(items, parse_criteria(call.query), field, lambda a: attribute_view(a, store_id))


def delete_attribute(call: Call) -> bool:
    state = call.state
    attr = lookup(state, call.params["attributeCode"])
    if not attr.is_user_defined:
        raise ApiError(400, "System attribute can not be deleted")
    del state.attributes[attr.code]
    del state.attribute_ids[attr.id]
    for aset in state.attribute_sets.values():
        aset.attributes.pop(attr.code, None)
    return True


def _with_options(call: Call) -> Attribute:
    attr = lookup(call.state, call.params["attributeCode"])
    if not attr.has_table_options and not attr.fixed_options:
        raise ApiError(400, NO_OPTIONS, [attr.code])
    return attr


def list_options(call: Call) -> list[dict[str, Any]]:
    """``GET .../options``; labels are the request store's, so read them through ``all``."""
    return option_views(lookup(call.state, call.params["attributeCode"]), call.scope.store_id)


def add_option(call: Call) -> str | bool:
    """``POST /V1/products/attributes/{attributeCode}/options``."""
    attr = _with_options(call)
    if attr.fixed_options:
        raise ApiError(400, NO_OPTIONS, [attr.code])
    option = _add_option(call.state, attr, call.part("option"))
    style = call.state.settings.option_add_result
    if style == "true":
        return True
    return "id_new_option" if style == "id_new_option" else str(option.id)


def update_option(call: Call) -> bool:
    """``PUT .../options/{optionId}`` (2.4.7+)."""
    attr = _with_options(call)
    option = _option(attr, call.params["optionId"])
    raw = call.part("option")
    label = str(raw.get("label") or option.label).strip()
    for other in attr.options.values():
        if other is not option and other.label.lower() == label.lower():
            raise ApiError(400, DUPLICATE_LABEL, [label])
    option.label = label
    option.sort_order = int(raw.get("sort_order", option.sort_order) or 0)
    for item in raw.get("store_labels") or ():
        if isinstance(item, dict) and item.get("store_id") and item.get("label"):
            option.store_labels[int(item["store_id"])] = str(item["label"])
    return True


def _option(attr: Attribute, raw_id: str) -> Option:
    option = attr.options.get(int(raw_id)) if raw_id.isdigit() else None
    if option is None:
        raise ApiError(
            404, 'The "%1" attribute doesn\'t include an option with "%2" ID.', [attr.code, raw_id]
        )
    return option


def delete_option(call: Call) -> bool:
    attr = _with_options(call)
    option = _option(attr, call.params["optionId"])
    del attr.options[option.id]
    if attr.default_value == str(option.id):
        attr.default_value = None
    return True
