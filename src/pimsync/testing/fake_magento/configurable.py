"""Configurable products: super attributes (``OptionRepository``) and child links
(``LinkManagement``), with the checks and messages of those classes.

``POST .../child`` on a retry answers 400 "The product is already attached."; a client should
treat that as success. Two children with the same option values are *not* rejected here (only a
product save with ``configurable_product_links`` checks that).
"""

from __future__ import annotations

from typing import Any

from .attributes import lookup as lookup_attribute
from .context import Call
from .errors import ApiError, Params, input_errors, internal_error, product_not_found
from .product_view import product_view, super_attribute_views
from .state import now
from .store import Attribute, Product, SuperAttribute, value_at

NOT_CONFIGURABLE = "Only implemented for configurable product: %1"


def can_be_configurable(attr: Attribute) -> bool:
    """Global, user-defined, a select with table options (``Configurable::canUseAttribute``)."""
    return (
        attr.scope == "global"
        and attr.frontend_input == "select"
        and attr.has_table_options
        and attr.is_user_defined
    )


def _product(call: Call, sku: str) -> Product:
    product = call.state.product_by_sku(sku)
    if product is None:
        raise product_not_found()
    return product


def _configurable(call: Call) -> Product:
    product = _product(call, call.params["sku"])
    if product.type_id != "configurable":
        raise ApiError(400, NOT_CONFIGURABLE, [call.params["sku"]])
    return product


def add_option(call: Call) -> int | str:
    """``POST /V1/configurable-products/{sku}/options``: answers the new option id."""
    option = call.part("option")
    problems: list[tuple[str, Params]] = []
    if not option.get("attribute_id"):
        problems.append(("Option attribute ID is not specified.", None))
    if not option.get("label"):
        problems.append(("Option label is not specified.", None))
    values = option.get("values")
    if not values:
        problems.append(("Option values are not specified.", None))
    elif any(not (isinstance(v, dict) and v.get("value_index")) for v in values):
        problems.append(("Value index is not specified for an option.", None))
    if problems:
        raise input_errors(problems)
    product = _product(call, call.params["sku"])
    if product.type_id not in ("simple", "virtual", "configurable"):
        raise internal_error()  # an InvalidArgumentException: not localized, so a masked 500
    attr = lookup_attribute(call.state, str(option["attribute_id"]))
    if any(sa.attribute_id == attr.id for sa in product.super_attributes):
        raise ApiError(400, "Product already has this option")
    if not can_be_configurable(attr):
        raise ApiError(400, "Something went wrong while saving option.")
    # OptionRepository::save turns a simple or virtual product into a configurable one.
    product.type_id = "configurable"
    sa = SuperAttribute(
        next(call.state.super_attribute_ids),
        attr.id,
        str(option["label"]),
        int(option.get("position") or 0),
        bool(option.get("is_use_default", True)),
    )
    product.super_attributes.append(sa)
    product.updated_at = now()
    return str(sa.id) if call.state.settings.string_ids else sa.id


def list_options(call: Call) -> list[dict[str, Any]]:
    return super_attribute_views(call.state, _configurable(call))


def _super(call: Call, product: Product, message: str) -> SuperAttribute:
    wanted = call.params["id"]
    for sa in product.super_attributes:
        if str(sa.id) == wanted:
            return sa
    raise ApiError(404, message, [wanted] if "%1" in message else None)


def get_option(call: Call) -> dict[str, Any]:
    product = _configurable(call)
    sa = _super(call, product, "Requested option doesn't exist: %1")
    return next(v for v in super_attribute_views(call.state, product) if v["id"] == sa.id)


def update_option(call: Call) -> int | str:
    product = _configurable(call)
    sa = _super(call, product, 'Option with id "%1" not found')
    option = call.part("option")
    sa.label = str(option.get("label") or sa.label)
    sa.position = int(option.get("position", sa.position) or 0)
    return str(sa.id) if call.state.settings.string_ids else sa.id


def delete_option(call: Call) -> bool:
    """Deleting a super attribute also unlinks every child (``saveProducts($product, [])``)."""
    product = _configurable(call)
    sa = _super(call, product, "Requested option doesn't exist")
    product.super_attributes.remove(sa)
    product.children = []
    product.updated_at = now()
    return True


def add_child(call: Call) -> bool:
    """``POST /V1/configurable-products/{sku}/child`` ``{"childSku": "..."}``."""
    parent = _product(call, call.params["sku"])
    child_sku = call.body.get("childSku") if isinstance(call.body, dict) else None
    child = _product(call, str(child_sku or ""))
    if child.id in parent.children:
        raise ApiError(400, "The product is already attached.")
    if not parent.super_attributes:
        raise ApiError(400, "The parent product doesn't have configurable product options.")
    for sa in parent.super_attributes:
        code = call.state.attribute_ids[sa.attribute_id]
        if not value_at(child.values, call.scope.store_id, code):
            raise ApiError(
                400,
                'The child product doesn\'t have the "%1" attribute value. '
                "Verify the value and try again.",
                [code],
            )
    parent.children.append(child.id)
    parent.updated_at = now()
    return True


def children(call: Call) -> list[dict[str, Any]]:
    parent = _product(call, call.params["sku"])
    if parent.type_id != "configurable":
        return []
    state = call.state
    return [
        product_view(state, state.products[cid], call.scope.store_id)
        for cid in parent.children
        if cid in state.products
    ]


def remove_child(call: Call) -> bool:
    """``DELETE /V1/configurable-products/{sku}/children/{childSku}``."""
    parent = _product(call, call.params["sku"])
    if parent.type_id != "configurable":
        raise ApiError(
            400, 'The product with the "%1" SKU isn\'t a configurable product.', [parent.sku]
        )
    state = call.state
    kept = [c for c in parent.children if state.products[c].sku != call.params["childSku"]]
    if len(kept) == len(parent.children):
        raise ApiError(
            404, "The option that was requested doesn't exist. Verify the entity and try again."
        )
    parent.children = kept
    parent.updated_at = now()
    return True
