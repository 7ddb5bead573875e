"""The route table: every REST path the fake serves, its ACL resource and service contract.

Templates use Magento's ``webapi.xml`` parameter names, because bulk paths are derived from them
(``PUT /V1/products/:sku`` -> ``PUT /async/bulk/V1/products/bySku`` with ``sku`` in each item).
"""

from __future__ import annotations

from typing import Any

from . import attributes, categories, configurable, media, products, sets
from .bulk import BulkManager
from .context import Call, Handler, Router, Service
from .errors import product_not_found

PRODUCTS = "Magento_Catalog::products"
ATTRIBUTES = "Magento_Catalog::attributes_attributes"
SETS = "Magento_Catalog::sets"
CATEGORIES = "Magento_Catalog::categories"
MEDIA = "Magento_Catalog::catalog"
STOCK = "Magento_CatalogInventory::cataloginventory"
STORES = "Magento_Backend::stores"
BULK = "Magento_Logging::system_magento_logging_bulk_operations"


def _svc(interface: str, method: str) -> Service:
    """A service whose implementation is the interface's model class plus ``\\Interceptor``."""
    module, _, name = interface.rpartition("\\Api\\")
    model = name.removesuffix("Interface")
    return Service(interface, f"{module}\\Model\\{model}\\Interceptor", method)


PRODUCT_REPO = "Magento\\Catalog\\Api\\ProductRepositoryInterface"
ATTRIBUTE_REPO = "Magento\\Catalog\\Api\\ProductAttributeRepositoryInterface"
OPTION_MGMT = "Magento\\Catalog\\Api\\ProductAttributeOptionManagementInterface"
CATEGORY_REPO = "Magento\\Catalog\\Api\\CategoryRepositoryInterface"
CATEGORY_LINKS = "Magento\\Catalog\\Api\\CategoryLinkRepositoryInterface"
GALLERY = "Magento\\Catalog\\Api\\ProductAttributeMediaGalleryManagementInterface"
SUPER_REPO = "Magento\\ConfigurableProduct\\Api\\OptionRepositoryInterface"
LINK_MGMT = "Magento\\ConfigurableProduct\\Api\\LinkManagementInterface"


# --- store configuration -------------------------------------------------------------------


def store_views(call: Call) -> list[dict[str, Any]]:
    """``GET /V1/store/storeViews``: includes the admin store (id 0), as Magento's does."""
    out = [{"id": 0, "code": "admin", "name": "Admin", "website_id": 0, "store_group_id": 0,
            "is_active": 1}]  # fmt: skip
    out += [
        {"id": s.id, "code": s.code, "name": s.name, "website_id": s.website_id,
         "store_group_id": s.group_id, "is_active": 1}
        for s in call.state.config.stores.values()
    ]  # fmt: skip
    return out


def websites(call: Call) -> list[dict[str, Any]]:
    out = [{"id": 0, "code": "admin", "name": "Admin", "default_group_id": 0}]
    out += [
        {"id": w.id, "code": w.code, "name": w.name, "default_group_id": w.id}
        for w in call.state.config.websites.values()
    ]
    return out


def store_groups(call: Call) -> list[dict[str, Any]]:
    config = call.state.config
    out = [{"id": 0, "website_id": 0, "root_category_id": 0, "default_store_id": 0,
            "name": "Default", "code": "default"}]  # fmt: skip
    for w in config.websites.values():
        code = "main_website_store" if w.code == "base" else f"{w.code}_store"
        out.append(
            {"id": w.id, "website_id": w.id, "root_category_id": config.ROOT_CATEGORY_ID,
             "default_store_id": w.store_ids[0] if w.store_ids else 0,
             "name": "Main Website Store" if w.code == "base" else w.name, "code": code}
        )  # fmt: skip
    return out


def store_configs(call: Call) -> list[dict[str, Any]]:
    """``GET /V1/store/storeConfigs[?storeCodes[]=fr]``: store views only, no admin store."""
    wanted = call.query.get_list("storeCodes[]") or call.query.get_list("storeCodes")
    base = call.base_url
    return [
        {"id": s.id, "code": s.code, "website_id": s.website_id, "locale": s.locale,
         "base_currency_code": "USD", "default_display_currency_code": "USD",
         "timezone": "UTC", "weight_unit": "lbs", "base_url": base, "base_link_url": base,
         "base_static_url": f"{base}static/", "base_media_url": f"{base}media/",
         "secure_base_url": base, "secure_base_link_url": base,
         "secure_base_static_url": f"{base}static/", "secure_base_media_url": f"{base}media/"}
        for s in call.state.config.stores.values()
        if not wanted or s.code in wanted
    ]  # fmt: skip


def website_link(call: Call) -> bool:
    """``POST /V1/products/{sku}/websites`` ``{"productWebsiteLink": {...}}``."""
    link = call.part("productWebsiteLink")
    product = call.state.product_by_sku(str(link.get("sku") or call.params["sku"]))
    if product is None:
        raise product_not_found()
    site = int(link.get("website_id") or 0)
    if site in call.state.config.websites and site not in product.website_ids:
        product.website_ids.append(site)
    return True


def build_router(bulk: BulkManager, login: Handler) -> Router:
    """Every route the fake answers; anything else is 404 "Request does not match any route."."""
    r = Router()
    add = r.add
    add("POST", "/V1/integration/admin/token", login, None)

    def save_attr(create: bool) -> Handler:
        return lambda call: attributes.save_attribute(call, create=create)

    # Literal segments win over parameters, so /V1/products/attributes never reaches :sku.
    add("GET", "/V1/products/attributes", attributes.list_attributes, ATTRIBUTES)
    add("POST", "/V1/products/attributes", save_attr(True), ATTRIBUTES,
        _svc(ATTRIBUTE_REPO, "save"), requires=("attribute",))  # fmt: skip
    add("GET", "/V1/products/attributes/:attributeCode", attributes.get_attribute, ATTRIBUTES)
    add("PUT", "/V1/products/attributes/:attributeCode", save_attr(False), ATTRIBUTES,
        _svc(ATTRIBUTE_REPO, "save"), requires=("attribute",))  # fmt: skip
    add("DELETE", "/V1/products/attributes/:attributeCode", attributes.delete_attribute,
        ATTRIBUTES, _svc(ATTRIBUTE_REPO, "deleteById"))  # fmt: skip
    opts = "/V1/products/attributes/:attributeCode/options"
    add("GET", opts, attributes.list_options, ATTRIBUTES)
    add("POST", opts, attributes.add_option, ATTRIBUTES, _svc(OPTION_MGMT, "add"),
        requires=("option",))  # fmt: skip
    add("PUT", f"{opts}/:optionId", attributes.update_option, ATTRIBUTES,
        _svc(OPTION_MGMT, "update"), requires=("option",))  # fmt: skip
    add("DELETE", f"{opts}/:optionId", attributes.delete_option, ATTRIBUTES,
        _svc(OPTION_MGMT, "delete"))  # fmt: skip

    # Attribute sets and groups.
    eav_sets = "Magento\\Eav\\Api\\AttributeSetManagementInterface"
    catalog_sets = "Magento\\Catalog\\Api\\AttributeSetManagementInterface"
    set_repo = "Magento\\Catalog\\Api\\AttributeSetRepositoryInterface"
    add("POST", "/V1/eav/attribute-sets", lambda c: sets.create_set(c, with_entity_type=True),
        SETS, _svc(eav_sets, "create"), requires=("attributeSet",))  # fmt: skip
    add("POST", "/V1/products/attribute-sets",
        lambda c: sets.create_set(c, with_entity_type=False), SETS, _svc(catalog_sets, "create"),
        requires=("attributeSet",))  # fmt: skip
    add("GET", "/V1/eav/attribute-sets/list", lambda c: sets.list_sets(c, product_only=False), SETS)
    add("GET", "/V1/products/attribute-sets/sets/list",
        lambda c: sets.list_sets(c, product_only=True), SETS)  # fmt: skip

    def get_set(product_only: bool) -> Handler:
        return lambda call: sets.get_set(call, product_only=product_only)

    for prefix, product_only in (("/V1/eav", False), ("/V1/products", True)):
        one = f"{prefix}/attribute-sets/:attributeSetId"
        add("GET", one, get_set(product_only), SETS)
        add("PUT", one, sets.update_set, SETS, _svc(set_repo, "save"), requires=("attributeSet",))
        add("DELETE", one, sets.delete_set, SETS, _svc(set_repo, "deleteById"))
    add("GET", "/V1/products/attribute-sets/:attributeSetId/attributes", sets.set_attributes, SETS)
    group_repo = "Magento\\Catalog\\Api\\ProductAttributeGroupRepositoryInterface"
    add("GET", "/V1/products/attribute-sets/groups/list", sets.list_groups, SETS)
    add("POST", "/V1/products/attribute-sets/groups", sets.save_group, SETS,
        _svc(group_repo, "save"), requires=("group",))  # fmt: skip
    add("PUT", "/V1/products/attribute-sets/:attributeSetId/groups", sets.save_group, SETS,
        _svc(group_repo, "save"), requires=("group",))  # fmt: skip
    add("DELETE", "/V1/products/attribute-sets/groups/:groupId", sets.delete_group, SETS,
        _svc(group_repo, "deleteById"))  # fmt: skip
    attr_mgmt = "Magento\\Catalog\\Api\\ProductAttributeManagementInterface"
    add("POST", "/V1/products/attribute-sets/attributes", sets.assign_attribute, SETS,
        _svc(attr_mgmt, "assign"),
        requires=("attributeSetId", "attributeGroupId", "attributeCode"))  # fmt: skip
    add("DELETE", "/V1/products/attribute-sets/:attributeSetId/attributes/:attributeCode",
        sets.unassign_attribute, SETS, _svc(attr_mgmt, "unassign"))  # fmt: skip

    # Products, stock and media.
    add("GET", "/V1/products", products.list_products, PRODUCTS)
    add("POST", "/V1/products", products.save_product, PRODUCTS, _svc(PRODUCT_REPO, "save"),
        saves="product", requires=("product",))  # fmt: skip
    add("GET", "/V1/products/:sku", products.get_product, PRODUCTS)
    add("PUT", "/V1/products/:sku", products.save_product, PRODUCTS, _svc(PRODUCT_REPO, "save"),
        saves="product", requires=("product",))  # fmt: skip
    add("DELETE", "/V1/products/:sku", products.delete_product, PRODUCTS,
        _svc(PRODUCT_REPO, "deleteById"))  # fmt: skip
    add("POST", "/V1/products/:sku/websites", website_link, PRODUCTS,
        _svc("Magento\\Catalog\\Api\\ProductWebsiteLinkRepositoryInterface", "save"),
        requires=("productWebsiteLink",))  # fmt: skip
    stock_svc = Service("Magento\\CatalogInventory\\Api\\StockRegistryInterface",
                        "Magento\\CatalogInventory\\Model\\StockRegistry\\Interceptor",
                        "updateStockItemBySku")  # fmt: skip
    add("PUT", "/V1/products/:productSku/stockItems/:itemId", products.put_stock, STOCK,
        stock_svc, requires=("stockItem",))  # fmt: skip
    add("GET", "/V1/stockItems/:productSku", products.get_stock, STOCK)
    gallery_impl = "Magento\\Catalog\\Model\\Product\\Gallery\\GalleryManagement\\Interceptor"
    gallery = Service(GALLERY, gallery_impl, "create")
    add("GET", "/V1/products/:sku/media", media.list_entries, MEDIA)
    add("POST", "/V1/products/:sku/media", media.create_entry, MEDIA, gallery, requires=("entry",))
    add("GET", "/V1/products/:sku/media/:entryId", media.get_entry, MEDIA)
    add("PUT", "/V1/products/:sku/media/:entryId", media.update_entry, MEDIA,
        Service(GALLERY, gallery.implementation, "update"), requires=("entry",))  # fmt: skip
    add("DELETE", "/V1/products/:sku/media/:entryId", media.delete_entry, MEDIA,
        Service(GALLERY, gallery.implementation, "remove"))  # fmt: skip

    # Configurable products.
    cfg = "/V1/configurable-products/:sku"
    add("POST", f"{cfg}/options", configurable.add_option, PRODUCTS, _svc(SUPER_REPO, "save"),
        requires=("option",))  # fmt: skip
    add("GET", f"{cfg}/options/all", configurable.list_options, PRODUCTS)
    add("GET", f"{cfg}/options/:id", configurable.get_option, PRODUCTS)
    add("PUT", f"{cfg}/options/:id", configurable.update_option, PRODUCTS,
        _svc(SUPER_REPO, "save"), requires=("option",))  # fmt: skip
    add("DELETE", f"{cfg}/options/:id", configurable.delete_option, PRODUCTS,
        _svc(SUPER_REPO, "deleteById"))  # fmt: skip
    add("POST", f"{cfg}/child", configurable.add_child, PRODUCTS, _svc(LINK_MGMT, "addChild"),
        requires=("childSku",))  # fmt: skip
    add("GET", f"{cfg}/children", configurable.children, PRODUCTS)
    add("DELETE", f"{cfg}/children/:childSku", configurable.remove_child, PRODUCTS,
        _svc(LINK_MGMT, "removeChild"))  # fmt: skip

    # Categories.
    add("GET", "/V1/categories", categories.tree, CATEGORIES)
    add("GET", "/V1/categories/list", categories.list_categories, CATEGORIES)
    add("POST", "/V1/categories", categories.save_category, CATEGORIES,
        _svc(CATEGORY_REPO, "save"), saves="category", requires=("category",))  # fmt: skip
    add("GET", "/V1/categories/:categoryId", categories.get_category, CATEGORIES)
    add("PUT", "/V1/categories/:id", categories.save_category, CATEGORIES,
        _svc(CATEGORY_REPO, "save"), saves="category", requires=("category",))  # fmt: skip
    add("DELETE", "/V1/categories/:categoryId", categories.delete_category, CATEGORIES,
        _svc(CATEGORY_REPO, "deleteByIdentifier"))  # fmt: skip
    add("PUT", "/V1/categories/:categoryId/move", categories.move_category, CATEGORIES,
        _svc("Magento\\Catalog\\Api\\CategoryManagementInterface", "move"),
        requires=("parentId",))  # fmt: skip
    links = "/V1/categories/:categoryId/products"
    add("GET", links, categories.category_products, CATEGORIES)
    for verb in ("POST", "PUT"):
        add(verb, links, categories.assign_product, CATEGORIES, _svc(CATEGORY_LINKS, "save"),
            requires=("productLink",))  # fmt: skip
    add("DELETE", f"{links}/:sku", categories.unassign_product, CATEGORIES,
        _svc(CATEGORY_LINKS, "deleteByIds"))  # fmt: skip

    # Stores and bulk status.
    add("GET", "/V1/store/storeViews", store_views, STORES)
    add("GET", "/V1/store/storeGroups", store_groups, STORES)
    add("GET", "/V1/store/websites", websites, STORES)
    add("GET", "/V1/store/storeConfigs", store_configs, STORES)
    add("GET", "/V1/bulk", bulk.search, BULK)
    add("GET", "/V1/bulk/:bulkUuid/status", bulk.status, BULK)
    add("GET", "/V1/bulk/:bulkUuid/detailed-status", bulk.detailed_status, BULK)
    add("GET", "/V1/bulk/:bulkUuid/operation-status/:status", bulk.count, BULK)
    return r
