"""The data-model description site (opencampaign.docsite)."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from lxml import etree

from opencampaign.docsite import build_site, render_pages
from opencampaign.docsite.graph import Column, Edge, Graph, Node
from opencampaign.docsite.svglayout import layout_svg
from opencampaign.schema.registry import SchemaRegistry, load_registry
from opencampaign.storage.placement import Placement

CHROMIUM = Path("/usr/bin/chromium")
EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"

SCHEMAS = {
    # a base schema kept in the local database (so the cloud-side order table gets a replica of it)
    "contact.xml": """
<srcSchema namespace="cus" name="contact" label="Contacts" labelSingular="Contact" desc="People we write to">
  <enumeration name="gender" basetype="byte" default="unknown" label="Gender">
    <value name="unknown" label="Not specified" value="0"/>
    <value name="male" label="Male" value="1"/>
    <value name="female" label="Female" value="2" desc="Woman"/>
  </enumeration>
  <element name="contact" autopk="true" label="Contacts" dataSource="default">
    <compute-string expr="@email"/>
    <dbindex name="email"><keyfield xpath="@email"/></dbindex>
    <key name="code"><keyfield xpath="@code"/></key>
    <attribute name="email" type="string" length="80" label="Email" desc="Main address"/>
    <attribute name="code" type="string" length="20" label="Code"/>
    <attribute name="gender" type="byte" enum="gender" label="Gender" default="0"/>
    <attribute name="domain" type="string" label="Domain" expr="GetEmailDomain([@email])"/>
    <attribute name="note" type="string" xml="true" label="Note"/>
    <element name="location" label="Location">
      <attribute name="city" type="string" length="50" label="City"/>
    </element>
    <element name="comment" type="memo" label="Comment"/>
  </element>
  <methods>
    <method name="Subscribe" static="true" access="anonymous" label="Subscribe to the newsletter">
      <parameters>
        <param name="address" type="string" inout="in" desc="Address to subscribe"/>
        <param name="ticket" type="long" inout="out"/>
      </parameters>
    </method>
    <method name="Touch" const="true"/>
  </methods>
</srcSchema>""",
    # an extension of the base: merged into cus:contact, fields marked belongsTo="acme:contact"
    "contact_ext.xml": """
<srcSchema namespace="acme" name="contact" extendedSchema="cus:contact" label="Contact extension">
  <element name="contact">
    <attribute name="loyalty" type="long" label="Loyalty points"/>
    <element name="location">
      <attribute name="zip" type="string" length="10" label="Zip code"/>
    </element>
  </element>
</srcSchema>""",
    # a new schema linked to the base (cloud database by default for custom schemas)
    "order.xml": """
<srcSchema namespace="cus" name="order" label="Orders">
  <enumeration name="status" basetype="string">
    <value name="open" label="Open" value="open"/>
    <value name="paid" label="Paid" value="paid"/>
  </enumeration>
  <element name="order" autopk="true" label="Orders">
    <attribute name="number" type="string" length="128" label="Number"/>
    <attribute name="status" type="string" length="10" enum="status" label="Status"/>
    <attribute name="amount" type="double" label="Amount"/>
    <element name="contact" type="link" target="cus:contact" label="Contact" revLink="orders"
             revLabel="Orders" revIntegrity="own" integrity="define"/>
    <element name="lines" xml="true" unbound="true" label="Lines">
      <attribute name="sku" type="string" label="SKU"/>
    </element>
  </element>
</srcSchema>""",
    # user text that must stay text everywhere
    "evil.xml": f"""
<srcSchema namespace="cus" name="evil" label="{EVIL.replace('<', '&lt;')} &quot;q&quot; \\N"
           desc="&lt;img src=x onerror=alert(2)&gt;">
  <enumeration name="kind" basetype="string">
    <value name="a" label="&lt;b&gt;bold&lt;/b&gt; | pipe" value="a"/>
  </enumeration>
  <element name="evil" autopk="true" label="{EVIL.replace('<', '&lt;')}">
    <attribute name="name" type="string" label="{EVIL.replace('<', '&lt;')}" desc="a &amp; b" enum="kind"/>
    <element name="order" type="link" target="cus:order" revLink="evils"/>
  </element>
</srcSchema>""",
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> SchemaRegistry:
    folder = tmp_path_factory.mktemp("schemas")
    for name, text in SCHEMAS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return load_registry([folder])


@pytest.fixture(scope="module")
def site(registry: SchemaRegistry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    written = build_site(registry, out)
    assert all(p.is_file() for p in written)
    return out


def read(site: Path, rel: str) -> str:
    return (site / rel).read_text(encoding="utf-8")


# -- content -----------------------------------------------------------------------------------


def test_files_of_the_site(site: Path, registry: SchemaRegistry) -> None:
    for rel in ("index.html", "enumerations.html", "erd.html", "erd.svg", "datamodel.md", "static/site.css"):
        assert (site / rel).is_file(), rel
    for schema in registry:
        assert (site / "schemas" / f"{schema.namespace}_{schema.name}.html").is_file()
    assert (site / "schemas/cus_order.svg").is_file()
    pages = render_pages(registry)
    on_disk = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert set(pages) == on_disk
    assert pages["schemas/cus_contact.html"] == (site / "schemas/cus_contact.html").read_bytes()


def test_contact_page_structure_and_documentation(site: Path) -> None:
    page = read(site, "schemas/cus_contact.html")
    # Documentation view: xpaths, columns, storage, labels, extension
    for text in ("@email", "location/@city", "location/@zip", "CusContact.sEmail", "CusContact.iLoyalty",
                 "CusContact.sZip", "CusContact.mComment", "Loyalty points", "acme:contact", "Main address"):
        assert text in page, text
    assert "calculated: <code>GetEmailDomain([@email])</code>" in page
    assert '<td>XML</td>' in page  # @note is stored in mData
    # Structure view badges
    for kind in ("b-pk", "b-sql", "b-calc", "b-xml", "b-memo", "b-idx", "b-enum", "b-coll"):
        assert f"badge {kind}" in page, kind
    # enumeration values, keys, indexes, methods
    assert "cus:contact:gender" in page and "female=2" in page and "Not specified" in page
    assert "CusContact_email" in page and ">code<" in page
    assert "Subscribe" in page and "anonymous" in page and "static" in page and "const" in page
    assert "<td>address</td><td>string</td><td>in</td>" in page
    assert "<td>ticket</td><td>long</td><td>out</td>" in page
    # the reverse collection generated by cus:order's link
    assert 'href="cus_order.html"' in page and "1-N (reverse)" in page
    # placement, XML documents (escaped), neighbourhood diagram
    assert "local (replicated to cloud)" in page
    assert "&lt;schema " in page and "Extension xtk:srcSchema|acme:contact" in page
    assert 'data="cus_contact.svg"' in page


def test_order_page_links(site: Path) -> None:
    page = read(site, "schemas/cus_order.html")
    assert "CusOrder.iContactId" in page and "badge b-fk" in page
    assert "<code>@contact-id = [cus:contact]@id</code>" in page
    assert "<td>define</td>" in page and "N-1" in page
    assert 'href="cus_contact.html#f-orders"' in page  # reverse link, hyperlinked
    assert "open=open" in page and "paid=paid" in page
    assert "XML collection" in page and "lines/@sku" in page
    assert "<dd>cloud</dd>" in page


def test_explicit_placement(registry: SchemaRegistry) -> None:
    pages = render_pages(registry, placement=Placement(registry, single_database=True))
    contact = pages["schemas/cus_contact.html"].decode()
    assert "<dd>local</dd>" in contact and "replicated" not in contact


def test_index_and_enumerations(site: Path) -> None:
    index = read(site, "index.html")
    assert "Namespace cus" in index and "Namespace acme" not in index  # extensions merge into the base
    assert 'href="schemas/cus_order.html"' in index and "CusOrder" in index
    assert 'data-filter="schema-list"' in index and "<script>" in index
    enums = read(site, "enumerations.html")
    assert 'id="enum-cus:contact:gender"' in enums
    assert 'href="schemas/cus_contact.html#f-@gender"' in enums  # "used by"


def test_markdown_has_a_section_per_schema(site: Path, registry: SchemaRegistry) -> None:
    text = read(site, "datamodel.md")
    for schema in registry:
        assert f"\n## {schema.id} — " in text, schema.id
    assert "| `@email` | Email | string | 80 | `CusContact.sEmail` |" in text
    assert "`cus:contact:gender` (unknown=0, male=1, female=2)" in text
    assert "### Methods" in text and "in address: string; out ticket: long" in text


# -- structure of the files ----------------------------------------------------------------------


class _Checker(HTMLParser):
    """Balanced tags, and no block inside <p> (an HTML5 parser would silently close the <p>)."""

    VOID = {"meta", "link", "br", "hr", "img", "input", "col", "wbr", "source", "area", "base", "embed", "track"}
    BLOCK = {"div", "table", "ul", "ol", "dl", "section", "nav", "pre", "details", "h1", "h2", "h3", "h4", "p"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.refs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(values["id"] or "")
        for name in ("href", "src", "data"):
            if values.get(name):
                self.refs.append(values[name] or "")
        if tag == "script":
            self.scripts += 1
        if tag in self.BLOCK and "p" in self.stack:
            self.errors.append(f"<{tag}> inside <p>")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def _check(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    return checker


def test_pages_are_well_formed_html5(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 5
    for path in pages:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"), path
        checker = _check(text)
        assert not checker.errors and not checker.stack, (path, checker.errors[:3], checker.stack)
        assert len(checker.ids) == len(set(checker.ids)), f"duplicate ids in {path}"
        title = text.split("<title>", 1)[1].split("</title>", 1)[0]
        assert title.strip(), path


def _svg_refs(path: Path) -> list[str]:
    tree = etree.parse(str(path))
    refs = []
    for node in tree.iter():
        for name, value in node.attrib.items():
            if name in ("href", "{http://www.w3.org/1999/xlink}href"):
                refs.append(value)
    return refs


def test_every_relative_link_resolves(site: Path) -> None:
    ids: dict[Path, set[str]] = {}
    for path in site.rglob("*.html"):
        ids[path.resolve()] = set(_check(path.read_text(encoding="utf-8")).ids)
    checked = 0
    for path in list(site.rglob("*.html")) + list(site.rglob("*.svg")):
        refs = _check(path.read_text(encoding="utf-8")).refs if path.suffix == ".html" else _svg_refs(path)
        for ref in refs:
            parts = urlsplit(ref)
            assert not parts.scheme and not parts.netloc, f"{path}: external reference {ref}"
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path.resolve()
            assert target.is_file(), f"{path}: broken link {ref}"
            assert target.is_relative_to(site.resolve()), f"{path}: link outside the site {ref}"
            if parts.fragment and target.suffix == ".html":
                assert unquote(parts.fragment) in ids[target], f"{path}: missing anchor {ref}"
            checked += 1
    assert checked > 100


def test_svgs_parse_as_xml(site: Path) -> None:
    svgs = list(site.rglob("*.svg"))
    assert len(svgs) >= 4
    for path in svgs:
        root = etree.parse(str(path)).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg", path


def test_user_text_is_escaped(site: Path) -> None:
    for rel in ("index.html", "schemas/cus_evil.html", "enumerations.html", "erd.svg",
                "schemas/cus_order.svg", "datamodel.md"):
        text = read(site, rel)
        assert EVIL not in text, rel
        assert "<img src=x" not in text, rel
        assert "<b>bold" not in text, rel
    page = read(site, "schemas/cus_evil.html")
    assert EVIL_ESCAPED in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert _check(page).scripts == 1  # only the site's own filter script
    assert EVIL_ESCAPED in read(site, "datamodel.md")
    assert r"&lt;b&gt;bold&lt;/b&gt; \| pipe" in read(site, "datamodel.md")


# -- diagrams ------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_graphviz_is_used_when_available(site: Path) -> None:
    assert "Generated by graphviz" in read(site, "erd.svg")
    assert "Drawn by Graphviz dot" in read(site, "erd.html")


def test_builtin_layout_when_dot_is_missing(registry: SchemaRegistry, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no `dot` on PATH
    assert shutil.which("dot") is None
    pages = render_pages(registry)
    assert b"Drawn by the built-in layout" in pages["erd.html"]
    for rel in ("erd.svg", "schemas/cus_order.svg", "schemas/cus_contact.svg"):
        assert b"graphviz" not in pages[rel]
        root = etree.fromstring(pages[rel])
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.find(".//{http://www.w3.org/2000/svg}path") is not None
    assert b'href="schemas/cus_order.html"' in pages["erd.svg"]
    assert EVIL.encode() not in pages["erd.svg"]


def _boxes(svg: bytes) -> list[tuple[float, float, float, float]]:
    root = etree.fromstring(svg)
    return [
        (float(r.get("x")), float(r.get("y")), float(r.get("width")), float(r.get("height")))
        for r in root.iter("{http://www.w3.org/2000/svg}rect") if "box" in (r.get("class") or "")
    ]


def test_builtin_layout_large_model_boxes_and_connectors_do_not_overlap() -> None:
    rng = random.Random(7)
    nodes = [
        Node(f"ns{i % 5}:t{i}", f"Table {i}", f"ns{i % 5}:t{i} · T{i}", f"t{i}.html", f"ns{i % 5}",
             columns=[Column("@id", f"iT{i}Id", "pk")] + [Column(f"@f{k}", f"iF{k}", "fk") for k in range(i % 4)])
        for i in range(340)
    ]
    edges = [Edge(nodes[i].id, nodes[rng.randrange(340)].id, f"l{k}", rng.choice(["N-1", "1-1"]))
             for i in range(340) for k in range(rng.randrange(4))]
    started = time.perf_counter()
    svg = layout_svg(Graph("big", nodes, edges))
    assert time.perf_counter() - started < 5
    boxes = _boxes(svg)
    assert len(boxes) == 340
    for i, (x1, y1, w1, h1) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1:]:
            assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1
    # connectors are elbows travelling in the gaps: no segment enters a box's interior
    root = etree.fromstring(svg)
    for path in root.iter("{http://www.w3.org/2000/svg}path"):
        if path.get("class") != "edge":
            continue
        points = [tuple(map(float, p.split(","))) for p in path.get("d", "")[1:].split(" L")]
        for (ax, ay), (bx, by) in zip(points, points[1:], strict=False):
            assert ax == bx or ay == by
            for x, y, w, h in boxes:
                inside_x = min(ax, bx) < x + w - 0.5 and max(ax, bx) > x + 0.5
                inside_y = min(ay, by) < y + h - 0.5 and max(ay, by) > y + 0.5
                assert not (inside_x and inside_y), (path.get("d"), (x, y, w, h))


# -- browser -------------------------------------------------------------------------------------


def _chromium(url: str, profile: Path) -> tuple[str, str]:
    args = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--enable-logging=stderr", "--v=0", "--dump-dom", url]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=90, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish on {url} (a blocking alert() from unescaped text?)")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (Debian package chromium)")
def test_pages_render_in_headless_chromium(site: Path, tmp_path: Path) -> None:
    index_url = (site / "index.html").as_uri() + "?q=order"
    dom, log = _chromium(index_url, tmp_path / "profile1")
    assert 'data-search-ready="1"' in dom  # the inline script ran
    # the ?q= query pre-filled the box and the filter hid the rows that do not match
    assert 'data-search="cus:contact ' in dom and 'data-search="cus:order ' in dom
    contact_row = dom.split('data-search="cus:contact ', 1)[1].split(">", 1)[0]
    order_row = dom.split('data-search="cus:order ', 1)[1].split(">", 1)[0]
    assert "hidden" in contact_row and "hidden" not in order_row
    page_dom, page_log = _chromium((site / "schemas/cus_evil.html").as_uri(), tmp_path / "profile2")
    assert 'data-search-ready="1"' in page_dom and EVIL_ESCAPED in page_dom
    for text in (log, page_log):
        problems = [line for line in text.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
        assert not problems, problems
