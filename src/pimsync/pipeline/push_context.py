"""What payloads refer to: Magento's stores, websites and attribute sets, and the ids and
axes in staging."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pimsync.config import Config
from pimsync.errors import ConfigError
from pimsync.magento.client import MagentoClient
from pimsync.magento.mapping import AttributeInfo, CatalogContext
from pimsync.magento.models import StoreView, Website
from pimsync.pipeline.push_items import PushContext
from pimsync.staging.repository import StagingRepository
from pimsync.staging.tables import Status


def build_push_context(
    repo: StagingRepository, client: MagentoClient, config: Config, *, force: bool = False
) -> PushContext:
    """Everything a push's payloads refer to: Magento's stores, websites and attribute sets,
    checked against the mapping, then what staging holds.

    The three reads go out together: each is a round trip that the run waits for before its
    first item (and every worker before its first claim), and a real Magento takes a few
    hundred milliseconds to answer each.
    """
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="pimsync-setup") as pool:
        stores, websites = pool.submit(client.store_views), pool.submit(client.websites)
        sets = pool.submit(client.attribute_sets)
        catalog = _checked_catalog(config, stores.result(), websites.result())
        set_ids = sets.result()
    context = PushContext(catalog, force=force)
    context.set_ids_by_name = set_ids
    load_context(repo, context)
    return context


def build_catalog_context(client: MagentoClient, config: Config) -> CatalogContext:
    """Read Magento's stores and websites and check that the mapping names existing ones."""
    return _checked_catalog(config, client.store_views(), client.websites())


def _checked_catalog(
    config: Config, store_views: list[StoreView], website_list: list[Website]
) -> CatalogContext:
    """The catalog context for these stores and websites; a ConfigError listing every store
    view or website the mapping names that Magento does not have."""
    stores = {store.code: store.id for store in store_views}
    websites = {website.code: website.id for website in website_list}
    problems = [
        f"[mapping] locales: Magento has no store view {code!r} (it has {', '.join(stores)})"
        for code in config.mapping.locales.values()
        if code not in stores
    ]
    problems += [
        f"[mapping] websites: Magento has no website {code!r} (it has {', '.join(websites)})"
        for code in config.mapping.websites
        if code not in websites
    ]
    if problems:
        raise ConfigError("the mapping does not match this Magento", problems)
    return CatalogContext(
        mapping=config.mapping,
        attributes={},
        option_ids={},
        category_ids={},
        attribute_set_ids={},
        store_ids=stores,
        website_ids=websites,
    )


def load_context(repo: StagingRepository, context: PushContext) -> None:
    """Load what payloads refer to from staging, once per push: attributes, the configurable
    axes of every product model and the model tree, then the ids Magento gave."""
    catalog = context.catalog
    excluded = [Status.QUARANTINED, Status.DELETED_IN_PIM]
    catalog.attributes = {
        code: AttributeInfo(
            code,
            str(data.get("type")),
            bool(data.get("localizable")),
            bool(data.get("scopable")),
        )
        for code, data in repo.records("attributes", exclude_status=excluded)
    }
    variants: dict[str, list[str]] = {}
    for code, data in repo.records("family_variants", exclude_status=excluded):
        sets = sorted(data.get("variant_attribute_sets") or [], key=lambda s: s.get("level", 0))
        variants[code] = [axis for level in sets for axis in level.get("axes") or []]
    catalog.family_axes = dict(variants)
    for code, data in repo.records("product_models", exclude_status=excluded):
        context.model_parents[code] = data.get("parent")
        axes = variants.get(f"{data.get('family')}/{data.get('family_variant')}")
        if axes is not None:
            catalog.family_axes[f"@{code}"] = axes
    refresh_ids(repo, context)


def refresh_ids(repo: StagingRepository, context: PushContext) -> None:
    """Reload the ids Magento gave (options, categories, attribute sets, attributes): done after
    each entity and each category level, so what follows can refer to what was just created."""
    catalog = context.catalog
    catalog.option_ids = repo.magento_ids("attribute_options")
    catalog.category_ids = repo.magento_ids("categories")
    catalog.attribute_set_ids = {f: int(i) for f, i in repo.magento_ids("families").items()}
    context.attribute_ids = repo.magento_ids("attributes")
