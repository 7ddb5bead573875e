"""pim package."""
