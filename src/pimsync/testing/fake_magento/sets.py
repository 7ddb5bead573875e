"""Attribute sets, attribute groups and attribute-to-set assignment.

``/V1/eav/attribute-sets/list`` lists the sets of *every* entity type (customer, address,
category, product: several are named "Default"); filter on ``entity_type_id`` = 4 or use
``/V1/products/attribute-sets/sets/list``. Deleting a set deletes its products (the foreign key
cascades), as in Magento.
"""

from __future__ import annotations

from typing import Any

from .attributes import attribute_view, lookup
from .context import Call
from .errors import ApiError, invalid_field_value, no_such_entity, required_field
from .search import parse_criteria, search
from .state import DEFAULT_SET_ID, PRODUCT_ENTITY_TYPE, CatalogState, slugify
from .store import AttributeGroup, AttributeSet

SET_NOT_FOUND = (
    'The AttributeSet with a "%1" ID doesn\'t exist. Verify the attributeSet and try again.'
)
GROUP_NOT_FOUND = 'The group with the "%1" ID doesn\'t exist. Verify the ID and try again.'
GROUP_NOT_SAVED = "The attributeGroup can't be saved."


def set_view(aset: AttributeSet) -> dict[str, Any]:
    return {
        "attribute_set_id": aset.id,
        "attribute_set_name": aset.name,
        "sort_order": aset.sort_order,
        "entity_type_id": aset.entity_type_id,
    }


def group_view(group: AttributeGroup, position: int = 1) -> dict[str, Any]:
    return {
        "attribute_group_id": str(group.id),
        "attribute_group_name": group.name,
        "attribute_set_id": group.set_id,
        "extension_attributes": {
            "attribute_group_code": slugify(group.name),
            "sort_order": str(position),
        },
    }


def _set(state: CatalogState, set_id: int, *, product_only: bool = False) -> AttributeSet:
    aset = state.attribute_sets.get(set_id)
    if aset is None:
        raise ApiError(404, SET_NOT_FOUND, [set_id])
    if product_only and aset.entity_type_id != PRODUCT_ENTITY_TYPE:
        raise no_such_entity("id", set_id)
    return aset


def _check_name(state: CatalogState, name: str, entity_type_id: int, own_id: int) -> None:
    if not name.strip():
        raise ApiError(400, "The attribute set name is empty. Enter the name and try again.")
    for other in state.attribute_sets.values():
        if (
            other.id != own_id
            and other.entity_type_id == entity_type_id
            and other.name.lower() == name.strip().lower()
        ):
            raise ApiError(
                400,
                'A "%1" attribute set name already exists. Create a new name and try again.',
                [name],
            )


def create_set(call: Call, *, with_entity_type: bool) -> dict[str, Any]:
    """``POST /V1/eav/attribute-sets`` or ``POST /V1/products/attribute-sets``."""
    state = call.state
    if with_entity_type:
        code = call.body.get("entityTypeCode") if isinstance(call.body, dict) else None
        if code is None:
            raise required_field("entityTypeCode")
        if code != "catalog_product":
            raise ApiError(400, "Invalid entity_type specified: %1", [code])
    data = call.part("attributeSet")
    if data.get("attribute_set_id") is not None:
        raise invalid_field_value("id", data["attribute_set_id"])
    skeleton_raw = call.body.get("skeletonId")
    skeleton_id = int(skeleton_raw) if str(skeleton_raw or "0").isdigit() else 0
    if skeleton_id == 0:
        raise invalid_field_value("skeletonId", skeleton_raw or 0)
    skeleton = _set(state, skeleton_id)
    name = str(data.get("attribute_set_name") or "")
    _check_name(state, name, PRODUCT_ENTITY_TYPE, -1)
    aset = AttributeSet(
        next(state.set_ids), name.strip(), int(data.get("sort_order") or 0), PRODUCT_ENTITY_TYPE
    )
    state.attribute_sets[aset.id] = aset
    # initFromSkeleton: copy the groups and put every attribute in the matching new group.
    group_map: dict[int, int] = {}
    for group in [g for g in state.groups.values() if g.set_id == skeleton.id]:
        copy = AttributeGroup(next(state.group_ids), group.name, aset.id)
        state.groups[copy.id] = copy
        group_map[group.id] = copy.id
    for code, (group_id, sort_order, _) in skeleton.attributes.items():
        if group_id in group_map:
            state.assign(aset.id, group_map[group_id], code, sort_order)
    return set_view(aset)


def get_set(call: Call, *, product_only: bool) -> dict[str, Any]:
    return set_view(_set(call.state, call.int_param("attributeSetId"), product_only=product_only))


def update_set(call: Call) -> dict[str, Any]:
    state = call.state
    aset = _set(state, call.int_param("attributeSetId"))
    data = call.part("attributeSet")
    if "attribute_set_name" in data:
        _check_name(state, str(data["attribute_set_name"] or ""), aset.entity_type_id, aset.id)
        aset.name = str(data["attribute_set_name"]).strip()
    if data.get("sort_order") is not None:
        aset.sort_order = int(data["sort_order"])
    return set_view(aset)


def delete_set(call: Call) -> bool:
    state = call.state
    aset = _set(state, call.int_param("attributeSetId"))
    if aset.id == DEFAULT_SET_ID:
        raise ApiError(400, "The default attribute set can't be deleted.")
    del state.attribute_sets[aset.id]
    for group_id in [g.id for g in state.groups.values() if g.set_id == aset.id]:
        del state.groups[group_id]
    for product in [p for p in state.products.values() if p.attribute_set_id == aset.id]:
        del state.products[product.id]
        del state.sku_index[product.sku.lower()]
        state.drop_urls(("product", product.id))
    return True


def list_sets(call: Call, *, product_only: bool) -> dict[str, Any]:
    sets = sorted(call.state.attribute_sets.values(), key=lambda s: s.id)
    if product_only:
        sets = [s for s in sets if s.entity_type_id == PRODUCT_ENTITY_TYPE]
    return search(sets, parse_criteria(call.query), lambda s, name: set_view(s).get(name), set_view)


def set_attributes(call: Call) -> list[dict[str, Any]]:
    """``GET /V1/products/attribute-sets/{attributeSetId}/attributes``."""
    state = call.state
    aset = _set(state, call.int_param("attributeSetId"), product_only=True)
    return [attribute_view(state.attributes[c]) for c in aset.attributes if c in state.attributes]


# --- groups --------------------------------------------------------------------------------


def list_groups(call: Call) -> dict[str, Any]:
    """Magento refuses a group search without an ``attribute_set_id`` filter."""
    criteria = parse_criteria(call.query)
    if "attribute_set_id" not in criteria.fields():
        raise required_field("attribute_set_id")
    groups = sorted(call.state.groups.values(), key=lambda g: g.id)
    return search(
        groups, criteria, lambda g, name: group_view(g).get(name), lambda g: group_view(g)
    )


def save_group(call: Call) -> dict[str, Any]:
    """``POST .../groups`` (create) and ``PUT .../{attributeSetId}/groups`` (rename)."""
    state = call.state
    data = call.part("group")
    set_id = int(call.params.get("attributeSetId") or data.get("attribute_set_id") or 0)
    if set_id not in state.attribute_sets:
        raise no_such_entity("attributeSetId", set_id)
    name = str(data.get("attribute_group_name") or "").strip()
    group_id = data.get("attribute_group_id")
    group = state.groups.get(int(group_id)) if group_id is not None else None
    if group_id is not None and group is None:
        raise ApiError(404, GROUP_NOT_FOUND, [group_id])
    if group is not None and group.set_id != set_id:
        raise ApiError(400, "The attribute group doesn't belong to the provided attribute set.")
    clash = any(
        g.set_id == set_id and g.name.lower() == name.lower() and g is not group
        for g in state.groups.values()
    )
    if not name or clash:
        raise ApiError(400, GROUP_NOT_SAVED)
    if group is None:
        group = AttributeGroup(next(state.group_ids), name, set_id)
        state.groups[group.id] = group
    group.name = name
    return group_view(group)


def delete_group(call: Call) -> bool:
    state = call.state
    group = state.groups.get(call.int_param("groupId"))
    if group is None:
        raise ApiError(404, GROUP_NOT_FOUND, [call.params["groupId"]])
    del state.groups[group.id]
    aset = state.attribute_sets.get(group.set_id)
    if aset is not None:
        for code in [c for c, (g, _, _) in aset.attributes.items() if g == group.id]:
            del aset.attributes[code]
    return True


# --- assignment ----------------------------------------------------------------------------


def assign_attribute(call: Call) -> int:
    """``POST /V1/products/attribute-sets/attributes``: answers the entity_attribute id."""
    state = call.state
    set_id = call.body_int("attributeSetId")
    aset = state.attribute_sets.get(set_id)
    if aset is None:
        raise ApiError(404, 'AttributeSet with id "%1" does not exist.', [set_id])
    if aset.entity_type_id != PRODUCT_ENTITY_TYPE:
        raise ApiError(400, "Wrong attribute set id provided")
    group_id = call.body_int("attributeGroupId")
    group = state.groups.get(group_id)
    if group is None:
        raise ApiError(404, GROUP_NOT_FOUND, [group_id])
    if group.set_id != set_id:
        raise ApiError(400, "Attribute group does not belong to attribute set")
    code = str(call.body.get("attributeCode") or "")
    attr = lookup(state, code)
    return state.assign(set_id, group_id, attr.code, int(call.body.get("sortOrder") or 0))


def unassign_attribute(call: Call) -> bool:
    state = call.state
    set_id = call.int_param("attributeSetId")
    aset = state.attribute_sets.get(set_id)
    if aset is None:
        raise ApiError(404, "Attribute set not found: %1", [set_id])
    attr = lookup(state, call.params["attributeCode"])
    if attr.code not in aset.attributes:
        raise ApiError(400, 'Attribute "%1" not found in attribute set %2.', [attr.code, set_id])
    if not attr.is_user_defined:
        raise ApiError(400, "System attribute can not be deleted")
    del aset.attributes[attr.code]
    return True
