"""The search page at /ui: static files (index.html, style.css, *.js; no build step, no
CDN) that ship inside this package, served by routes.py with the JSON/SSE endpoints
under /ui/api/ they call; standalone.py inlines them around a trace file (`w2s view`)."""
from __future__ import annotations

from importlib import resources


def asset_bytes(name: str) -> bytes:
    """One of the page's files, as shipped (in the wheel or the checkout)."""
    return (resources.files(__name__) / name).read_bytes()
