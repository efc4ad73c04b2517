"""Choosing the diagram renderer: Graphviz `dot` when it is on PATH, else the built-in layout.

Small graphs (the per-schema neighbourhoods) are batched into a few dot processes running in
parallel; the whole-model graph gets its own process and timeout. Any graph dot fails on, or
takes too long for, is drawn by the built-in layout instead.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from .dot import dot_binary, run_dot_batch, to_dot
from .graph import Graph
from .svglayout import layout_svg

BATCH = 40


def renderer() -> str:
    return "graphviz" if dot_binary() else "builtin"


def render_svg(graph: Graph) -> tuple[bytes, str]:
    """The SVG and the name of the renderer that produced it."""
    return render_svgs({"g": graph})["g"]


def render_svgs(graphs: dict[str, Graph]) -> dict[str, tuple[bytes, str]]:
    keys = list(graphs)
    results: dict[str, bytes | None] = dict.fromkeys(keys)
    if dot_binary():
        big = [k for k in keys if len(graphs[k].nodes) > BATCH]
        small = [k for k in keys if len(graphs[k].nodes) <= BATCH]
        chunks = [[k] for k in big] + [small[i : i + BATCH] for i in range(0, len(small), BATCH)]
        workers = max(1, min(len(chunks), os.cpu_count() or 2))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            done = pool.map(lambda chunk: run_dot_batch([to_dot(graphs[k]) for k in chunk]), chunks)
            for chunk, svgs in zip(chunks, done, strict=True):
                results.update(zip(chunk, svgs, strict=True))
    out = {}
    for key in keys:
        svg = results[key]
        out[key] = (svg, "graphviz") if svg is not None else (layout_svg(graphs[key]), "builtin")
    return out
