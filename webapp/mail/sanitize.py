"""Make email HTML safe to show in our pages, and turn HTML into plain text.

`sanitize_html` is an allowlist (nh3/ammonia): anything not listed is dropped, so
scripts, event handlers, htmx attributes (`hx-*`, `data-hx-*`) and every `data-*`
attribute never reach the browser. Remote images are blocked by default because
they are read receipts ("tracking pixels"); `cid:` images are rewritten to our own
attachment URLs through a callback.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import unquote

import nh3

REMOTE_IMAGE_ALT = "[remote image blocked]"

_TAGS = (set(nh3.ALLOWED_TAGS) | {"font", "tfoot"}) - {"area", "map"}
_TABLE_CELL = {"align", "valign", "width", "height", "bgcolor", "colspan", "rowspan"}
_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"style", "title", "dir", "lang", "align"},
    "a": {"href", "hreflang"},
    "img": {"src", "alt", "width", "height", "align", "border"},
    "font": {"color", "face", "size"},
    "table": {"align", "width", "border", "cellpadding", "cellspacing", "bgcolor", "summary"},
    "td": _TABLE_CELL,
    "th": _TABLE_CELL,
    "tr": {"align", "valign", "bgcolor"},
}
# Layout and typography only; nothing that can load a URL (background, list-style,
# border-image, content) or escape the message box (position, z-index).
_STYLE_PROPERTIES = {
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "line-height",
    "letter-spacing",
    "white-space",
    "vertical-align",
    "direction",
    "margin",
    "margin-top",
    "margin-right",
    "margin-bottom",
    "margin-left",
    "padding",
    "padding-top",
    "padding-right",
    "padding-bottom",
    "padding-left",
    "border",
    "border-top",
    "border-right",
    "border-bottom",
    "border-left",
    "border-color",
    "border-style",
    "border-width",
    "border-collapse",
    "border-spacing",
    "border-radius",
    "width",
    "max-width",
    "min-width",
    "height",
    "max-height",
    "min-height",
    "display",
    "float",
    "clear",
    "table-layout",
}
_CLEAN_CONTENT_TAGS = {"script", "style", "title", "template", "noscript", "xml"}
_LINK_SCHEMES = ("http://", "https://", "mailto:", "tel:")
# An <img ...> start tag (bounded, so the scan stays linear) and a remote src inside it.
_IMG_TAG = re.compile(r"<img\b[^>]{0,4000}", re.I)
_REMOTE_SRC = re.compile(r"""\ssrc\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def sanitize_html(
    html: str,
    allow_remote_images: bool = False,
    cid_resolver: Callable[[str], str | None] | None = None,
) -> str:
    """Return `html` cleaned for display inside one of our pages.

    `cid_resolver` receives a Content-ID (no "cid:", no angle brackets) and returns
    the URL we serve that inline image from, or None to drop the image source.
    """
    if not html:
        return ""
    html = limit_nesting(html)
    if not allow_remote_images:
        # Cosmetic only: the first attribute wins in HTML, so this alt text shows in
        # place of the image. Safety comes from the filter below, which drops the src.
        html = _IMG_TAG.sub(_mark_remote_image, html)

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        return _filter_attribute(tag, attr, value, allow_remote_images, cid_resolver)

    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags=_CLEAN_CONTENT_TAGS,
        attributes=_ATTRIBUTES,
        attribute_filter=attribute_filter,
        strip_comments=True,
        link_rel="noopener noreferrer",
        url_schemes={"http", "https", "mailto", "tel", "cid"},
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties=_STYLE_PROPERTIES,
    )


# Block containers: html5ever checks the open-element stack for each of them, so
# 100,000 nested <div>s take minutes. Nobody nests them deeper than this.
_MAX_NESTING = 256
_CONTAINER_TAG = re.compile(
    r"<(/?)(address|article|aside|blockquote|center|details|dialog|dir|div|dl|fieldset|"
    r"figcaption|figure|footer|header|hgroup|listing|main|menu|nav|ol|pre|section|"
    r"summary|ul|xmp)\b[^>]{0,2000}>?",
    re.I,
)


def limit_nesting(html: str) -> str:
    """Drop block container tags nested deeper than _MAX_NESTING (a linear pre-pass)."""
    if html.count("<") <= _MAX_NESTING:
        return html
    depth = 0
    dropped: dict[str, int] = {}

    def visit(match: re.Match) -> str:
        nonlocal depth
        name = match.group(2).lower()
        if match.group(1):
            if dropped.get(name):
                dropped[name] -= 1
                return ""
            depth = max(0, depth - 1)
            return match.group(0)
        if depth >= _MAX_NESTING:
            dropped[name] = dropped.get(name, 0) + 1
            return ""
        depth += 1
        return match.group(0)

    return _CONTAINER_TAG.sub(visit, html)


def _mark_remote_image(match: re.Match) -> str:
    tag = match.group(0)
    if _REMOTE_SRC.search(tag):
        return f'<img alt="{REMOTE_IMAGE_ALT}"' + tag[4:]
    return tag


def _filter_attribute(
    tag: str,
    attr: str,
    value: str,
    allow_remote_images: bool,
    cid_resolver: Callable[[str], str | None] | None,
) -> str | None:
    """Decide one attribute: URLs must be absolute and of a kind we allow."""
    if attr == "style":
        lowered = value.lower()
        return None if "url(" in lowered or "expression(" in lowered else value
    if tag == "a" and attr == "href":
        # Relative links would point into our own application.
        return value if value.strip().lower().startswith(_LINK_SCHEMES) else None
    if tag == "img" and attr == "src":
        return _image_source(value.strip(), allow_remote_images, cid_resolver)
    if attr in {"src", "href", "cite"}:
        return None
    return value


def _image_source(
    src: str,
    allow_remote_images: bool,
    cid_resolver: Callable[[str], str | None] | None,
) -> str | None:
    lowered = src.lower()
    if lowered.startswith("cid:"):
        if cid_resolver is None:
            return None
        content_id = unquote(src[4:]).strip().strip("<>")
        return cid_resolver(content_id) if content_id else None
    if allow_remote_images and lowered.startswith(("http://", "https://")):
        return src
    return None


# -- HTML to text ------------------------------------------------------------------

_BLOCK_TAGS = {
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "center",
    "dd",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "ul",
}
_SKIP_TAGS = {"script", "style", "title", "template", "noscript", "xml"}
_TEXT_TAGS = _BLOCK_TAGS - {"form"}
_SPACES = re.compile(r"[ \t\r\n\f\u00a0]+")


class _TextExtractor(HTMLParser):
    """Collects visible text; block elements start new lines, blockquotes get "> "."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.quote_depth = 0
        self.skip_depth = 0
        self.pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self.flush(force=tag == "br")
            if tag == "blockquote":
                self.quote_depth += 1
            elif tag == "pre":
                self.pre_depth += 1
            elif tag == "li":
                self.current.append("- ")
            elif tag == "hr":
                self.lines.append("> " * self.quote_depth + "---")

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag in _BLOCK_TAGS:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.flush()
            if tag == "p":
                self.lines.append(">" * self.quote_depth)  # a blank line after a paragraph
            if tag == "blockquote":
                self.quote_depth = max(0, self.quote_depth - 1)
            elif tag == "pre":
                self.pre_depth = max(0, self.pre_depth - 1)
        elif tag in {"td", "th"}:
            self.current.append(" ")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre_depth:
            first, *rest = data.replace("\r\n", "\n").split("\n")
            self.current.append(first)
            for line in rest:
                self.flush(force=True)
                self.current.append(line)
        else:
            self.current.append(_SPACES.sub(" ", data))

    def flush(self, force: bool = False) -> None:
        text = "".join(self.current)
        self.current = []
        text = text.rstrip() if self.pre_depth else text.strip()
        if text or force:
            self.lines.append("> " * self.quote_depth + text if text else ">" * self.quote_depth)


def strip_html_to_text(html: str) -> str:
    """Visible text of an HTML body, one line per block; quoted blocks prefixed "> "."""
    if not html:
        return ""
    # html.parser is quadratic on malformed input such as "<img <img <img ..."; nh3
    # (linear, html5ever) first reduces any input to well-formed markup of a few tags.
    html = nh3.clean(
        limit_nesting(html),
        tags=_TEXT_TAGS,
        clean_content_tags=_SKIP_TAGS,
        attributes={},
        link_rel=None,
    )
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    parser.flush()
    text = "\n".join(line.rstrip() for line in parser.lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
