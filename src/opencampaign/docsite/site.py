"""Building the whole description, in memory (for the server) or on disk (for the CLI)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..schema.registry import SchemaRegistry
from ..storage.placement import Placement
from . import markdown, pages, schema_page
from .diagram import render_svgs
from .facts import ModelFacts, page_name
from .graph import Graph, model_graph, neighbourhood_graph


def _css() -> bytes:
    return resources.files("opencampaign.docsite").joinpath("static/site.css").read_bytes()


def render_pages(registry: SchemaRegistry, placement: Placement | None = None) -> dict[str, bytes]:
    """Every file of the site by relative path ("index.html", "schemas/nms_recipient.html", ...)."""
    facts = ModelFacts(registry, placement)
    graphs: dict[str, Graph] = {"erd.svg": model_graph(facts, href_prefix="schemas/")}
    for schema in registry:
        graph = neighbourhood_graph(facts, schema, href_prefix="")
        if graph.nodes:
            graphs[f"schemas/{page_name(schema.id)}.svg"] = graph
    svgs = render_svgs(graphs)
    out: dict[str, bytes] = {
        "static/site.css": _css(),
        "index.html": pages.index(facts),
        "enumerations.html": pages.enumerations(facts),
        "erd.html": pages.erd(facts, renderer=svgs["erd.svg"][1], compact=graphs["erd.svg"].compact),
        "datamodel.md": markdown.render(facts),
    }
    for schema in registry:
        svg_path = f"schemas/{page_name(schema.id)}.svg"
        out[f"schemas/{page_name(schema.id)}.html"] = schema_page.render(facts, schema, has_svg=svg_path in svgs)
    out.update({path: svg for path, (svg, _) in svgs.items()})
    return out


def build_site(registry: SchemaRegistry, out_dir: Path, *, placement: Placement | None = None) -> list[Path]:
    """Write the site under `out_dir` (created if needed); returns the written files."""
    out_dir = Path(out_dir)
    written = []
    for rel, content in render_pages(registry, placement).items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    return written
