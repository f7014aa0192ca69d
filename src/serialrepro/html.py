"""The skeleton every self-contained HTML report shares: one page, inline CSS, no URLs.

:func:`page` wraps a report's body in the common ``<head>`` and style sheet
(:data:`BASE_CSS`, plus the report's own rules); :func:`png_img` embeds a PNG as a
``data:`` URI, so the page opens offline and can be mailed as one file; :func:`escape`
escapes every text that comes from a config, a table or a user. This module sits at the
bottom layer and imports nothing from the package.
"""

from __future__ import annotations

import base64
import html as _html

#: the rules both reports share: type, headings, tables, figures, folded blocks
BASE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: %(width)s;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; text-align: right; }
th { background: #f3f3f3; }
figure img { max-width: 100%%; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .8em; }
details { margin: .5em 0; } summary { cursor: pointer; }
"""


def escape(text) -> str:
    """``text`` as HTML text or attribute value (quotes escaped too)."""
    return _html.escape(str(text), quote=True)


def png_img(png: bytes, alt: str) -> str:
    """An ``<img>`` holding ``png`` as a base64 ``data:`` URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, body: list[str] | str, css: str = "", width: str = "1200px") -> str:
    """A whole page: doctype, UTF-8, viewport, ``title``, :data:`BASE_CSS` (body at most
    ``width`` wide) followed by ``css``, then ``body`` (trusted markup, joined by lines)."""
    body = body if isinstance(body, str) else "\n".join(body)
    style = BASE_CSS % {"width": width} + css
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{style}</style></head><body>",
        body, "</body></html>"]) + "\n"
