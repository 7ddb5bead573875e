"""pimsync: keep a Magento 2 / Adobe Commerce catalog in sync with a PIM."""

__version__ = "0.1.0"
