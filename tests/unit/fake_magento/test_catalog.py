"""FakeMagento: categories, attributes and options, attribute sets, configurables, media."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from pimsync.testing.fake_magento import FakeMagento
from tests.unit.fake_magento.conftest import AUTH, custom, product

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 32).decode()


def category(name: str, **fields: Any) -> dict[str, Any]:
    return {"category": {"name": name, "is_active": True, **fields}}


# --- categories ----------------------------------------------------------------------------


def test_category_create_get_and_tree(client):
    shoes = client.post("/rest/all/V1/categories", json=category("Shoes", parent_id=2)).json()
    assert (shoes["parent_id"], shoes["level"], shoes["path"]) == (2, 2, f"1/2/{shoes['id']}")
    assert custom(shoes, "url_key") == "shoes"
    boots = client.post(
        "/rest/all/V1/categories", json=category("Winter Boots", parent_id=shoes["id"])
    ).json()
    assert custom(boots, "url_path") == "shoes/winter-boots"
    # A missing parent_id falls back to the store's root category.
    bags = client.post("/rest/all/V1/categories", json=category("Bags")).json()
    assert (bags["parent_id"], bags["position"]) == (2, 2)
    got = client.get(f"/rest/all/V1/categories/{shoes['id']}").json()
    assert got["children"] == str(boots["id"])
    tree = client.get("/rest/V1/categories", params={"rootCategoryId": 2, "depth": 1}).json()
    assert tree["id"] == 2
    assert [c["name"] for c in tree["children_data"]] == ["Shoes", "Bags"]
    assert tree["children_data"][0]["children_data"] == []  # cut at depth 1
    full = client.get("/rest/V1/categories").json()
    assert full["children_data"][0]["children_data"][0]["name"] == "Winter Boots"


def test_category_errors_are_wrapped(client):
    r = client.post("/rest/all/V1/categories", json=category("X", parent_id=999))
    assert r.status_code == 404
    assert r.json() == {
        "message": "No such entity with %fieldName = %fieldValue",
        "parameters": {"fieldName": "id", "fieldValue": 999},
    }
    r = client.post("/rest/all/V1/categories", json={"category": {"parent_id": 2}})
    assert r.json() == {
        "message": "Could not save category: %1",
        "parameters": ['The "Name" attribute value is empty. Set the attribute and try again.'],
    }
    client.post("/rest/all/V1/categories", json=category("Shoes"))
    r = client.post("/rest/all/V1/categories", json=category("Shoes"))
    assert r.status_code == 400
    assert r.json() == {
        "message": "Could not save category: %1",
        "parameters": ["URL key for specified store already exists."],
    }
    assert client.get("/rest/V1/categories/999").status_code == 404


def test_category_store_values_and_list(fm, client):
    cid = client.post("/rest/all/V1/categories", json=category("Shoes")).json()["id"]
    r = client.put(f"/rest/fr/V1/categories/{cid}", json={"category": {"name": "Chaussures"}})
    assert r.status_code == 200
    assert fm.category_overrides(cid) == {"fr": {"name": "Chaussures"}}
    assert fm.category(cid, "fr")["name"] == "Chaussures"
    assert fm.category(cid)["name"] == "Shoes"
    listed = client.get(
        "/rest/fr/V1/categories/list",
        params={
            "searchCriteria[filter_groups][0][filters][0][field]": "name",
            "searchCriteria[filter_groups][0][filters][0][value]": "Chaussures",
        },
    ).json()
    assert [c["id"] for c in listed["items"]] == [cid]


def test_category_move(fm, client):
    a = fm.add_category("A")
    b = fm.add_category("B")
    c = fm.add_category("C", parent_id=a)
    r = client.put(f"/rest/all/V1/categories/{a}/move", json={"parentId": b})
    assert (r.status_code, r.json()) == (200, True)
    moved_child = fm.category(c)
    assert (moved_child["path"], moved_child["level"]) == (f"1/2/{b}/{a}/{c}", 4)
    assert custom(moved_child, "url_path") == "b/a/c"
    assert fm.url_rewrites()["b/a/c.html"] == f"category:{c}"
    # afterId 0 puts it first; no afterId appends.
    d = fm.add_category("D", parent_id=b)
    client.put(f"/rest/all/V1/categories/{d}/move", json={"parentId": b, "afterId": 0})
    assert fm.category(b)["children"] == f"{d},{a}"
    r = client.put(f"/rest/all/V1/categories/{b}/move", json={"parentId": c})
    assert r.status_code == 400
    assert r.json()["message"] == (
        "Operation do not allow to move a parent category to any of children category"
    )


def test_category_delete_and_product_links(fm, client):
    parent = fm.add_category("Parent")
    child = fm.add_category("Child", parent_id=parent)
    client.post("/rest/all/V1/products", json=product("A"))
    r = client.post(
        f"/rest/V1/categories/{child}/products",
        json={"productLink": {"sku": "A", "position": 3, "category_id": str(child)}},
    )
    assert r.json() is True
    assert client.get(f"/rest/V1/categories/{child}/products").json() == [
        {"sku": "A", "position": 3, "category_id": str(child)}
    ]
    assert client.delete(f"/rest/V1/categories/{parent}").json() is True
    assert fm.category(child) is None
    assert "category_links" not in fm.product("A")["extension_attributes"]
    r = client.delete("/rest/V1/categories/2")
    assert r.json() == {"message": "Cannot delete category with id %1", "parameters": [2]}


# --- attributes and options ----------------------------------------------------------------


def test_attribute_create_with_options_and_option_ids(client):
    r = client.post(
        "/rest/all/V1/products/attributes",
        json={
            "attribute": {
                "attribute_code": "shoe_size",
                "frontend_input": "select",
                "default_frontend_label": "Shoe size",
                "scope": "global",
                "options": [{"label": "38"}, {"label": "39"}],
            }
        },
    )
    assert r.status_code == 200
    attr = r.json()
    assert (attr["attribute_code"], attr["frontend_input"], attr["scope"]) == (
        "shoe_size",
        "select",
        "global",
    )
    assert attr["options"][0] == {"label": " ", "value": ""}  # the blank option comes first
    new_id = client.post(
        "/rest/all/V1/products/attributes/shoe_size/options", json={"option": {"label": "40"}}
    ).json()
    assert isinstance(new_id, str)
    assert new_id.isdigit()
    options = client.get("/rest/all/V1/products/attributes/shoe_size/options").json()
    assert [o["label"] for o in options] == [" ", "38", "39", "40"]
    assert options[-1]["value"] == new_id


@pytest.mark.parametrize(
    ("label", "message", "parameters"),
    [
        ("   ", "The attribute option label is empty. Enter the value and try again.", None),
        ("RED", 'Admin store attribute option label "%1" already exists.', ["RED"]),
    ],
)
def test_option_label_errors(fm, client, label, message, parameters):
    fm.add_attribute("color_x", options=["Red"])
    r = client.post(
        "/rest/all/V1/products/attributes/color_x/options", json={"option": {"label": label}}
    )
    assert r.status_code == 400
    assert r.json().get("parameters") == parameters
    assert r.json()["message"] == message


def test_option_errors_by_attribute(fm, client):
    fm.add_attribute("fabric", frontend_input="text")
    r = client.post(
        "/rest/all/V1/products/attributes/fabric/options", json={"option": {"label": "x"}}
    )
    assert (r.status_code, r.json()) == (
        400,
        {"message": 'The "%1" attribute doesn\'t work with options.', "parameters": ["fabric"]},
    )
    r = client.get("/rest/all/V1/products/attributes/nope")
    assert r.status_code == 404
    assert r.json()["parameters"] == ["nope"]
    fm.add_attribute("size", options=["S"])
    r = client.delete("/rest/all/V1/products/attributes/size/options/123456")
    assert (r.status_code, r.json()["parameters"]) == (404, ["size", "123456"])
    sid = fm.attribute_options("size")["S"]
    assert client.delete(f"/rest/all/V1/products/attributes/size/options/{sid}").json() is True
    assert fm.attribute_options("size") == {}


def test_option_store_labels_show_on_store_reads(fm, client):
    fm.add_attribute("color_x")
    client.post(
        "/rest/all/V1/products/attributes/color_x/options",
        json={"option": {"label": "Red", "store_labels": [{"store_id": 2, "label": "Rouge"}]}},
    )
    fr = client.get("/rest/fr/V1/products/attributes/color_x/options").json()
    admin = client.get("/rest/all/V1/products/attributes/color_x/options").json()
    assert (fr[1]["label"], admin[1]["label"]) == ("Rouge", "Red")


@pytest.mark.parametrize(
    ("style", "expected"), [("id_new_option", "id_new_option"), ("true", True)]
)
def test_older_option_add_results(style, expected):
    fake = FakeMagento(consumer=False, option_add_result=style)
    fake.add_attribute("size")
    with httpx.Client(transport=httpx.MockTransport(fake), base_url="http://m", headers=AUTH) as c:
        r = c.post("/rest/all/V1/products/attributes/size/options", json={"option": {"label": "S"}})
        assert r.json() == expected
    assert list(fake.attribute_options("size")) == ["S"]


def test_attribute_code_rules(client):
    r = client.post(
        "/rest/all/V1/products/attributes",
        json={"attribute": {"frontend_input": "text", "default_frontend_label": "Shoe width"}},
    )
    assert r.json()["attribute_code"] == "shoe_width"  # generated from the label
    r = client.post(
        "/rest/all/V1/products/attributes",
        json={"attribute": {"attribute_code": "shoe_width", "default_frontend_label": "W"}},
    )
    assert r.json() == {
        "message": "An attribute with the same code (%1) already exists.",
        "parameters": ["shoe_width"],
    }
    r = client.post(
        "/rest/all/V1/products/attributes",
        json={"attribute": {"attribute_code": "1bad", "default_frontend_label": "W"}},
    )
    assert r.json()["parameters"] == ["1bad"]
    r = client.post("/rest/all/V1/products/attributes", json={"attribute": {"attribute_code": "x"}})
    assert r.json() == {
        "message": '"%fieldName" is required. Enter and try again.',
        "parameters": {"fieldName": "frontend_label"},
    }


# --- attribute sets ------------------------------------------------------------------------


def test_attribute_set_from_skeleton(fm, client):
    fm.add_attribute("size", options=["S"])
    r = client.post(
        "/rest/V1/eav/attribute-sets",
        json={
            "entityTypeCode": "catalog_product",
            "attributeSet": {"attribute_set_name": "Shoes", "sort_order": 0},
            "skeletonId": 4,
        },
    )
    assert r.status_code == 200
    created = r.json()
    assert (created["attribute_set_name"], created["entity_type_id"]) == ("Shoes", 4)
    copied = fm.attribute_sets[created["attribute_set_id"]]
    assert "size" in copied["attribute_codes"]
    assert "Product Details" in copied["groups"]
    r = client.post(
        "/rest/V1/products/attribute-sets",
        json={"attributeSet": {"attribute_set_name": "shoes"}, "skeletonId": 4},
    )
    assert r.json() == {
        "message": 'A "%1" attribute set name already exists. Create a new name and try again.',
        "parameters": ["shoes"],
    }
    r = client.post(
        "/rest/V1/products/attribute-sets",
        json={"attributeSet": {"attribute_set_name": "Bags"}, "skeletonId": 0},
    )
    assert r.json()["parameters"] == {"value": 0, "fieldName": "skeletonId"}
    r = client.post(
        "/rest/V1/products/attribute-sets",
        json={"attributeSet": {"attribute_set_name": "Bags"}, "skeletonId": 77},
    )
    assert r.status_code == 404


def test_attribute_set_lists(client):
    name_default = {
        "searchCriteria[filter_groups][0][filters][0][field]": "attribute_set_name",
        "searchCriteria[filter_groups][0][filters][0][value]": "Default",
    }
    eav = client.get("/rest/V1/eav/attribute-sets/list", params=name_default).json()
    assert eav["total_count"] == 4  # customer, address, category and product sets
    catalog = client.get("/rest/V1/products/attribute-sets/sets/list", params=name_default).json()
    assert [s["attribute_set_id"] for s in catalog["items"]] == [4]


def test_groups_and_assignment(fm, client):
    r = client.get("/rest/V1/products/attribute-sets/groups/list")
    assert r.json()["parameters"] == {"fieldName": "attribute_set_id"}
    params = {
        "searchCriteria[filter_groups][0][filters][0][field]": "attribute_set_id",
        "searchCriteria[filter_groups][0][filters][0][value]": "4",
    }
    groups = client.get("/rest/V1/products/attribute-sets/groups/list", params=params).json()
    assert groups["items"][0]["attribute_group_id"] == "7"
    group = client.post(
        "/rest/V1/products/attribute-sets/groups",
        json={"group": {"attribute_group_name": "Specs", "attribute_set_id": 4}},
    ).json()
    fm.add_attribute("size", attribute_set_id=None)
    body = {
        "attributeSetId": 4,
        "attributeGroupId": int(group["attribute_group_id"]),
        "attributeCode": "size",
        "sortOrder": 1,
    }
    first = client.post("/rest/V1/products/attribute-sets/attributes", json=body).json()
    again = client.post("/rest/V1/products/attribute-sets/attributes", json=body).json()
    assert isinstance(first, int)
    assert first == again
    body["attributeGroupId"] = 999
    assert client.post("/rest/V1/products/attribute-sets/attributes", json=body).status_code == 404
    other = fm.add_attribute_set("Other")
    body["attributeGroupId"] = fm.attribute_sets[other]["groups"]["Content"]
    r = client.post("/rest/V1/products/attribute-sets/attributes", json=body)
    assert r.json() == {"message": "Attribute group does not belong to attribute set"}
    assert client.delete("/rest/V1/products/attribute-sets/4/attributes/size").json() is True
    assert "size" not in fm.attribute_sets[4]["attribute_codes"]


# --- configurable products -----------------------------------------------------------------


@pytest.fixture
def sizes(fm):
    fm.add_attribute("size", options=["S", "M", "L"])
    return fm.attribute_options("size")


def child(sku: str, size_id: int | None) -> dict[str, Any]:
    attrs = [] if size_id is None else [{"attribute_code": "size", "value": str(size_id)}]
    return product(sku, visibility=1, custom_attributes=attrs)


def test_configurable_flow(fm, client, sizes):
    attr_id = fm.attributes["size"]["attribute_id"]
    client.post(
        "/rest/all/V1/products",
        json={
            "product": {
                "sku": "TEE",
                "name": "Tee",
                "attribute_set_id": 4,
                "type_id": "configurable",
            }
        },
    )
    client.post("/rest/all/V1/products", json=child("TEE-S", sizes["S"]))
    client.post("/rest/all/V1/products", json=child("TEE-M", sizes["M"]))
    r = client.post(
        "/rest/all/V1/configurable-products/TEE/options",
        json={
            "option": {
                "attribute_id": str(attr_id),
                "label": "Size",
                "position": 0,
                "is_use_default": True,
                "values": [{"value_index": sizes["S"]}],
            }
        },
    )
    assert r.status_code == 200
    assert isinstance(r.json(), int)
    for sku in ("TEE-S", "TEE-M"):
        r = client.post("/rest/all/V1/configurable-products/TEE/child", json={"childSku": sku})
        assert (r.status_code, r.json()) == (200, True)
    r = client.post("/rest/all/V1/configurable-products/TEE/child", json={"childSku": "TEE-S"})
    assert r.json() == {"message": "The product is already attached."}
    assert fm.configurable_children("TEE") == ["TEE-S", "TEE-M"]
    parent = client.get("/rest/all/V1/products/TEE").json()["extension_attributes"]
    option = parent["configurable_product_options"][0]
    assert option["attribute_id"] == str(attr_id)
    assert option["values"] == [{"value_index": sizes["S"]}, {"value_index": sizes["M"]}]
    assert len(parent["configurable_product_links"]) == 2
    kids = client.get("/rest/all/V1/configurable-products/TEE/children").json()
    assert [k["sku"] for k in kids] == ["TEE-S", "TEE-M"]
    assert client.delete("/rest/all/V1/configurable-products/TEE/children/TEE-M").json() is True
    r = client.delete("/rest/all/V1/configurable-products/TEE/children/TEE-M")
    assert r.status_code == 404
    assert fm.configurable_children("TEE") == ["TEE-S"]


def test_configurable_child_errors(fm, client, sizes):
    attr_id = fm.attributes["size"]["attribute_id"]
    client.post(
        "/rest/all/V1/products",
        json={
            "product": {
                "sku": "TEE",
                "name": "Tee",
                "attribute_set_id": 4,
                "type_id": "configurable",
            }
        },
    )
    client.post("/rest/all/V1/products", json=child("TEE-X", None))
    r = client.post("/rest/all/V1/configurable-products/TEE/child", json={"childSku": "TEE-X"})
    assert r.json() == {"message": "The parent product doesn't have configurable product options."}
    client.post(
        "/rest/all/V1/configurable-products/TEE/options",
        json={"option": {"attribute_id": attr_id, "label": "Size", "values": [{"value_index": 1}]}},
    )
    r = client.post("/rest/all/V1/configurable-products/TEE/child", json={"childSku": "TEE-X"})
    assert r.status_code == 400
    assert r.json()["parameters"] == ["size"]
    r = client.post("/rest/all/V1/configurable-products/TEE/child", json={"childSku": "GHOST"})
    assert r.status_code == 404


def test_configurable_option_errors(fm, client, sizes):
    client.post("/rest/all/V1/products", json=product("SIMPLE"))
    r = client.post("/rest/all/V1/configurable-products/SIMPLE/options", json={"option": {}})
    assert r.json() == {
        "message": "One or more input exceptions have occurred.",
        "errors": [
            {"message": "Option attribute ID is not specified."},
            {"message": "Option label is not specified."},
            {"message": "Option values are not specified."},
        ],
    }
    fm.add_attribute("fabric", frontend_input="text")
    text_id = fm.attributes["fabric"]["attribute_id"]
    opt = {"label": "Fabric", "values": [{"value_index": 1}], "attribute_id": text_id}
    r = client.post("/rest/all/V1/configurable-products/SIMPLE/options", json={"option": opt})
    assert r.json() == {"message": "Something went wrong while saving option."}
    opt["attribute_id"] = fm.attributes["size"]["attribute_id"]
    assert (
        client.post(
            "/rest/all/V1/configurable-products/SIMPLE/options", json={"option": opt}
        ).status_code
        == 200
    )
    assert fm.product("SIMPLE")["type_id"] == "configurable"  # converted, as Magento does
    r = client.post("/rest/all/V1/configurable-products/SIMPLE/options", json={"option": opt})
    assert r.json() == {"message": "Product already has this option"}


def test_configurable_links_in_save_reject_duplicate_combinations(fm, client, sizes):
    attr_id = fm.attributes["size"]["attribute_id"]
    a = client.post("/rest/all/V1/products", json=child("A", sizes["S"])).json()["id"]
    b = client.post("/rest/all/V1/products", json=child("B", sizes["S"])).json()["id"]
    parent: dict[str, Any] = {
        "sku": "P",
        "name": "P",
        "attribute_set_id": 4,
        "type_id": "configurable",
        "extension_attributes": {
            "configurable_product_options": [
                {
                    "attribute_id": str(attr_id),
                    "label": "Size",
                    "values": [{"value_index": sizes["S"]}],
                }
            ],
            "configurable_product_links": [a, b],
        },
    }
    r = client.post("/rest/all/V1/products", json={"product": parent})
    assert r.json() == {
        "message": 'Products "%1" and "%2" have the same set of attribute values.',
        "parameters": [b, a],
    }
    parent["extension_attributes"]["configurable_product_links"] = [a]
    assert client.post("/rest/all/V1/products", json={"product": parent}).status_code == 200
    assert fm.configurable_children("P") == ["A"]


# --- media ---------------------------------------------------------------------------------


def entry(
    name: str = "front.png", data: str = PNG, mime: str = "image/png", **kw: Any
) -> dict[str, Any]:
    content = {"base64_encoded_data": data, "type": mime, "name": name}
    return {
        "entry": {
            "media_type": "image",
            "label": "Front",
            "position": 1,
            "disabled": False,
            "types": ["image", "small_image", "thumbnail"],
            "content": content,
            **kw,
        }
    }


def test_media_upload_list_and_roles(fm, client):
    client.post("/rest/all/V1/products", json=product("A"))
    first = client.post("/rest/all/V1/products/A/media", json=entry())
    assert first.status_code == 200
    assert isinstance(first.json(), int)
    second = client.post(
        "/rest/all/V1/products/A/media", json=entry(types=["image"], mime="image/png")
    ).json()
    files = [(e["id"], e["file"], e["types"]) for e in fm.media("A")]
    assert files == [
        (first.json(), "/f/r/front.png", ["small_image", "thumbnail"]),  # roles are exclusive
        (second, "/f/r/front_1.png", ["image"]),
    ]
    view = client.get("/rest/all/V1/products/A").json()
    assert custom(view, "image") == "/f/r/front_1.png"
    assert client.get("/rest/all/V1/products/A/media").json() == fm.media("A")
    assert client.delete(f"/rest/all/V1/products/A/media/{second}").json() is True
    r = client.delete(f"/rest/all/V1/products/A/media/{second}")
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (entry(data="%%%not-base64"), "The image content must be valid base64 encoded data."),
        (
            entry(data=base64.b64encode(b"plain text").decode()),
            "The image content must be valid base64 encoded data.",
        ),
        (entry(data=JPEG, mime="image/png"), "The image MIME type is not valid or not supported."),
        (entry(name="bad:name.png"), "Provided image name contains forbidden characters."),
        (
            {"entry": {"media_type": "image", "label": "x"}},
            "The image content is invalid. Verify the content and try again.",
        ),
    ],
)
def test_media_validation(fm, client, payload, message):
    client.post("/rest/all/V1/products", json=product("A"))
    r = client.post("/rest/all/V1/products/A/media", json=payload)
    assert (r.status_code, r.json()) == (400, {"message": message})
    assert fm.media("A") == []


def test_empty_gallery_in_a_save_deletes_every_image(fm, client):
    client.post("/rest/all/V1/products", json=product("A"))
    keep = client.post("/rest/all/V1/products/A/media", json=entry("a.png")).json()
    client.post("/rest/all/V1/products/A/media", json=entry("b.png"))
    client.put("/rest/all/V1/products/A", json={"product": {"sku": "A", "price": 11}})
    assert len(fm.media("A")) == 2  # omitted: untouched
    client.put(
        "/rest/all/V1/products/A",
        json={
            "product": {
                "sku": "A",
                "media_gallery_entries": [{"id": keep, "label": "Kept", "types": []}],
            }
        },
    )
    assert [(e["id"], e["label"]) for e in fm.media("A")] == [(keep, "Kept")]  # others removed
    client.put(
        "/rest/all/V1/products/A", json={"product": {"sku": "A", "media_gallery_entries": []}}
    )
    assert fm.media("A") == []


def test_string_ids_setting():
    fake = FakeMagento(consumer=False, string_ids=True)
    fake.add_product({"sku": "A", "name": "A", "attribute_set_id": 4, "price": 1})
    with httpx.Client(transport=httpx.MockTransport(fake), base_url="http://m", headers=AUTH) as c:
        assert isinstance(c.post("/rest/all/V1/products/A/media", json=entry()).json(), str)
    assert fake.writes_by_sku == {}  # seeding is not a client write
