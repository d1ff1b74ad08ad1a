"""App icons that can never run code: PNG as it is, SVG rebuilt from an allow-list.

An icon is a ``data:`` URL (``image/svg+xml`` or ``image/png``, base64). An SVG
is code a browser runs when it is opened as a page (scripts, event attributes,
``foreignObject`` HTML, links to ``javascript:``), so every SVG the catalog
keeps or serves is parsed and rebuilt with only drawing elements and plain
attributes; anything else is dropped. A catalog admin therefore cannot plant
script on the hub's origin through an icon.
"""

from __future__ import annotations

import base64
import binascii
import re
import xml.etree.ElementTree as ET
from functools import lru_cache

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)

PREFIX = {"image/svg+xml": "data:image/svg+xml;base64,", "image/png": "data:image/png;base64,"}
PNG_START = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"  # signature, then the IHDR chunk
ELEMENTS = {
    "svg", "g", "defs", "title", "desc", "symbol", "use",
    "path", "rect", "circle", "ellipse", "line", "polyline", "polygon",
    "text", "tspan", "textPath",
    "linearGradient", "radialGradient", "stop", "pattern", "clipPath", "mask", "marker",
    "filter", "feGaussianBlur", "feOffset", "feBlend", "feColorMatrix", "feFlood",
    "feComposite", "feMerge", "feMergeNode", "feDropShadow",
}  # fmt: skip
HREFS = {"href", f"{{{XLINK_NS}}}href"}
# url(...) may only name a fragment of the same document (gradients, clip paths)
FOREIGN_URL = re.compile(r"url\(\s*['\"]?\s*(?!#)", re.IGNORECASE)


class IconError(ValueError):
    """An icon the catalog cannot keep; the message says what to send instead."""


def _local(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def _clean_attributes(element: ET.Element) -> None:
    for name in list(element.attrib):
        ns, local = _local(name)
        value = element.attrib[name]
        keep = (
            not local.lower().startswith("on")
            and ns in ("", XLINK_NS)
            and (name not in HREFS or value.strip().startswith("#"))
            and not FOREIGN_URL.search(value)
            and "javascript:" not in value.lower().replace(" ", "")
        )
        if not keep:
            del element.attrib[name]


def _clean(element: ET.Element) -> None:
    for child in list(element):
        ns, local = _local(child.tag) if isinstance(child.tag, str) else ("", "")
        if ns != SVG_NS or local not in ELEMENTS:
            element.remove(child)  # with everything inside it
            continue
        _clean_attributes(child)
        _clean(child)


def clean_svg(text: str) -> str:
    """``text`` rebuilt with drawing elements and plain attributes only."""
    if "<!ENTITY" in text or re.search(r"<!DOCTYPE[^>]*\[", text):
        raise IconError("an SVG icon may not declare entities")
    try:
        root = ET.fromstring(text)  # noqa: S314 (entities are refused above)
    except ET.ParseError as e:
        raise IconError(f"the SVG icon is not well-formed XML ({e})") from None
    if root.tag != f"{{{SVG_NS}}}svg":
        raise IconError("an SVG icon's root must be <svg xmlns='http://www.w3.org/2000/svg'>")
    _clean_attributes(root)
    _clean(root)
    return ET.tostring(root, encoding="unicode")


def clean_icon(icon: str) -> str:
    """The icon as a safe ``data:`` URL ('' stays ''); ``IconError`` when it is
    not a base64 SVG or PNG data URL."""
    if not icon:
        return ""
    kind = next((k for k, p in PREFIX.items() if icon.startswith(p)), None)
    if kind is None:
        raise IconError("use a data:image/svg+xml;base64,... or data:image/png;base64,... URL")
    try:
        data = base64.b64decode(icon[len(PREFIX[kind]) :], validate=True)
    except (binascii.Error, ValueError):
        raise IconError("the data is not valid base64") from None
    if kind == "image/png":
        if not data.startswith(PNG_START):
            raise IconError("the data is not a PNG image")
        return icon
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise IconError("an SVG icon must be UTF-8 text") from None
    if not re.match(r"<svg[\s/>]|<\?xml", text):
        raise IconError("an SVG icon must start with <svg or <?xml")
    return PREFIX[kind] + base64.b64encode(clean_svg(text).encode()).decode()


@lru_cache(maxsize=256)
def safe_icon(icon: str) -> str:
    """What may be shown of a stored icon: cleaned, or '' when it cannot be."""
    try:
        return clean_icon(icon)
    except IconError:
        return ""
