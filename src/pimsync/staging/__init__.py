"""staging package."""
