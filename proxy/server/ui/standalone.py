"""The page as one self-contained HTML file around a trace file: what `w2s view FILE` opens.

The same index.html, style and scripts the server serves, inlined, with the
file's text embedded as JSON data; the page sees it and shows the traces
without a server. Its Content-Security-Policy allows no network request at
all, so the file can be opened anywhere, offline.
"""
from __future__ import annotations

import json

from w2s.proxy.server.ui import asset_bytes

OFFLINE_CSP = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
               "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">")
SCRIPTS = ("trace.js", "tree.js", "app.js")


def standalone_html(name: str, text: str) -> str:
    """index.html with its assets inlined and `text` (the file called `name`) embedded."""
    html = asset_bytes("index.html").decode()
    html = _swap(html, '<meta charset="utf-8">', '<meta charset="utf-8">\n' + OFFLINE_CSP)
    html = _swap(html, '<link rel="stylesheet" href="/ui/assets/style.css">',
                 "<style>\n" + asset_bytes("style.css").decode() + "</style>")
    # JSON data, never run; "<" escaped so no text in it can close the script element.
    data = json.dumps({"name": name, "text": text}, ensure_ascii=False).replace("<", "\\u003c")
    inlined = [f'<script type="application/json" id="w2s-file">{data}</script>']
    for script in SCRIPTS:
        code = asset_bytes(script).decode()
        if "</script" in code.lower():
            raise RuntimeError(f"{script} cannot be inlined: it contains '</script'")
        html = _swap(html, f'<script src="/ui/assets/{script}"></script>\n', "")
        inlined.append(f"<script>\n{code}</script>")
    return _swap(html, "</body>", "\n".join(inlined) + "\n</body>")


def _swap(html: str, old: str, new: str) -> str:
    if html.count(old) != 1:
        raise RuntimeError(f"index.html changed: expected {old!r} exactly once")
    return html.replace(old, new)
