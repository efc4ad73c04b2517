"""A tiny HTML builder that escapes by default.

Labels, descriptions and expressions in schemas are user text: everything passed as a child or an
attribute value is escaped unless it is already `Markup` (a fragment this package built itself).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Union

VOID = {"meta", "link", "br", "hr", "img", "input", "col", "wbr", "source"}

Child = Union["Markup", str, int, None, Iterable["Child"]]


class Markup(str):
    """Trusted HTML: never escaped again."""

    __slots__ = ()


def esc(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def join(children: Iterable[Child]) -> Markup:
    parts: list[str] = []
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, str | int):
            parts.append(esc(child))
        else:
            parts.append(join(child))
    return Markup("".join(parts))


def tag(name: str, *children: Child, **attrs: object) -> Markup:
    """`tag("a", "text", href=url, class_="x", data_id="y")`: trailing `_` dropped, `_` -> `-`."""
    rendered = []
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        rendered.append(f" {attr}" if value is True else f' {attr}="{esc(value)}"')
    start = f"<{name}{''.join(rendered)}>"
    if name in VOID:
        return Markup(start)
    return Markup(f"{start}{join(children)}</{name}>")


def page(title: str, body: Child, *, root: str = "", scripts: Iterable[str] = ()) -> bytes:
    """A complete HTML5 document; `root` is the relative path back to the site root ("" or "../")."""
    nav = tag(
        "nav",
        tag("a", "Schemas", href=f"{root}index.html"),
        tag("a", "Enumerations", href=f"{root}enumerations.html"),
        tag("a", "Diagram", href=f"{root}erd.html"),
        tag("a", "Markdown", href=f"{root}datamodel.md"),
        class_="top",
    )
    inline = Markup("".join(f"<script>{s}</script>" for s in scripts))
    doc = (
        "<!DOCTYPE html>\n"
        + tag(
            "html",
            tag(
                "head",
                Markup('<meta charset="utf-8">'),
                Markup('<meta name="viewport" content="width=device-width, initial-scale=1">'),
                tag("title", title),
                tag("link", rel="stylesheet", href=f"{root}static/site.css"),
            ),
            tag("body", nav, tag("main", body), inline),
            lang="en",
        )
        + "\n"
    )
    return doc.encode("utf-8")


def table(headers: list[str], rows: Iterable[list[Child]], **attrs: object) -> Markup:
    head = tag("thead", tag("tr", [tag("th", h) for h in headers]))
    body = tag("tbody", [tag("tr", [tag("td", cell) for cell in row]) for row in rows])
    return tag("table", head, body, **attrs)


def badge(text: str, kind: str, title: str) -> Markup:
    return tag("span", text, class_=f"badge b-{kind}", title=title)
