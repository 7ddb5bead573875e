"""Following Akeneo's `_links.next`, whatever the pagination type."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pimsync.errors import PimError


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list endpoint: its items (raw dicts) and the link to the next one."""

    items: list[Any]  # raw records; validation decides what a malformed one becomes
    next_url: str | None


def embedded_items(body: Any) -> list[Any] | None:
    """A list page's records (`_embedded.items`), or None when the body holds no such list."""
    embedded = body.get("_embedded") if isinstance(body, dict) else None
    items = embedded.get("items") if isinstance(embedded, dict) else None
    return items if isinstance(items, list) else None


@dataclass(slots=True)
class NextLinkPaginator:
    """Decides the next page from `_links.next` and refuses to loop.

    Akeneo's docs say never to build `page` or `search_after` yourself; a server that hands back
    the same next link twice would otherwise make us read forever.
    """

    # The recent links only: a loop shows up within them, and a million-item scan stays small.
    seen: deque[str] = field(default_factory=lambda: deque(maxlen=256))

    def parse(self, body: Any, url: str) -> Page:
        """A whole list page: its records and the next page's link."""
        items = embedded_items(body)
        next_url = self.follow(body, url)
        if items is None:
            raise PimError(f"the PIM answered {url} without `_embedded.items`")
        return Page(items=items, next_url=next_url)

    def follow(self, envelope: Any, url: str) -> str | None:
        """The next page's link from a list page's envelope (None on the last page)."""
        if not isinstance(envelope, dict):
            raise PimError(f"the PIM answered {url} with a list envelope that is not an object")
        links = envelope.get("_links")
        next_link = links.get("next") if isinstance(links, dict) else None
        next_url = next_link.get("href") if isinstance(next_link, dict) else None
        if next_url is not None and not isinstance(next_url, str):
            raise PimError(f"the PIM answered {url} with a `_links.next.href` that is not a URL")
        if next_url is not None:
            if next_url in self.seen:
                raise PimError(f"the PIM sent the same next page twice ({next_url}); stopping")
            self.seen.append(next_url)
        return next_url
