"""TLS for the two remotes: verification on by default, or a private CA bundle."""

from __future__ import annotations

import ssl
from pathlib import Path

from pimsync.errors import ConfigError


def ca_bundle_context(section: str, ca_bundle: Path) -> ssl.SSLContext:
    """An SSL context trusting `ca_bundle`; a bundle that cannot be loaded is a config error."""
    try:
        return ssl.create_default_context(cafile=str(ca_bundle))
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
        raise ConfigError(f"[{section}] ca_bundle: cannot load {ca_bundle}: {reason}") from None
