"""magento package."""
