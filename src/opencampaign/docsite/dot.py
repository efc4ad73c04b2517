"""Graphviz rendering: DOT text for a `Graph`, and running the `dot` binary.

Large models: dot's network-simplex and crossing-minimisation passes dominate the time, so graphs
over LARGE_GRAPH nodes get bounded iteration limits (nslimit/nslimit1/mclimit/searchsize) and,
over MANY_EDGES links, straight edges instead of splines. Above graph.COMPACT_THRESHOLD tables the
boxes are title-only and parallel links merged. Namespaces are clusters. Measured with Graphviz
2.43: 340 tables / 800 links linked the way data models are (hubs such as recipient or folder)
take ~0.2 s; random cyclic links are the worst case (a few seconds). A failure or a run over
TIMEOUT_SECONDS returns None and the caller falls back to the built-in layout (linear time).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess

from .graph import Edge, Graph, Node

LARGE_GRAPH = 60
MANY_EDGES = 400
TIMEOUT_SECONDS = 15.0
LARGE_LIMITS = {"nslimit": "2", "nslimit1": "2", "mclimit": "0.3", "searchsize": "20"}
KIND_TEXT = {"pk": "PK", "fk": "FK", "pkfk": "PK FK"}


def dot_binary() -> str | None:
    return shutil.which("dot")


def quote(text: str) -> str:
    # backslashes are escapes in DOT strings (\N, \l...): double them so user text stays text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _port(node: Node, xpath: str | None) -> str | None:
    for i, column in enumerate(node.columns):
        if column.name == xpath:
            return f"c{i}"
    return None


def _node(node: Node) -> str:
    head = "#fde9c8" if node.focus else "#dbe7f5"
    rows = [
        f'<tr><td port="t" bgcolor="{head}"><b>{_h(node.title)}</b><br/>'
        f'<font point-size="8">{_h(node.subtitle)}</font></td></tr>'
    ]
    for i, column in enumerate(node.columns):
        rows.append(
            f'<tr><td port="c{i}" align="left"><font point-size="9">{KIND_TEXT[column.kind]} '
            f"{_h(column.sqlname)}</font></td></tr>"
        )
    label = '<table border="0" cellborder="1" cellspacing="0" cellpadding="3" bgcolor="white" color="#7b8a9a">' + "".join(rows) + "</table>"
    attrs = f"URL={quote(node.href)} target=\"_top\" tooltip={quote(node.tooltip)}"
    return f"  {quote(node.id)} [{attrs} label=<{label}>];"


def _edge(graph: Graph, edge: Edge) -> str:
    src_node = graph.node(edge.src)
    port = _port(src_node, edge.src_column) if src_node else None
    src = quote(edge.src) + (f":{port}" if port else "")
    tail, head = edge.cardinality.split("-") if "-" in edge.cardinality else ("", "")
    attrs = [f"taillabel={quote(tail)}", f"headlabel={quote(head)}", f"tooltip={quote(edge.tooltip)}"]
    if not graph.compact:
        attrs.append(f"xlabel={quote(edge.name)}")
    if edge.src == edge.dst:
        attrs.append("dir=forward")
    return f"  {src} -> {quote(edge.dst)}:t [{' '.join(attrs)}];"


def to_dot(graph: Graph) -> str:
    lines = [
        f"digraph {quote(graph.name)} {{",
        '  graph [rankdir=LR nodesep=0.25 ranksep=0.9 fontname="Helvetica" fontsize=11 bgcolor="white"'
        f' pad=0.2 forcelabels={"false" if graph.compact else "true"}];',
        '  node [shape=plain fontname="Helvetica" fontsize=10];',
        '  edge [fontname="Helvetica" fontsize=8 color="#5b6b7f" fontcolor="#33475b" arrowhead=vee'
        ' arrowsize=0.7'
        ' labeldistance=1.6 labelangle=30];',
    ]
    if len(graph.nodes) > LARGE_GRAPH:
        lines.append("  graph [" + " ".join(f"{k}={v}" for k, v in LARGE_LIMITS.items()) + "];")
    if len(graph.edges) > MANY_EDGES:
        lines.append("  graph [splines=line];")
    if graph.cluster:
        namespaces: dict[str, list[Node]] = {}
        for node in graph.nodes:
            namespaces.setdefault(node.namespace, []).append(node)
        for ns, nodes in namespaces.items():
            lines.append(f"  subgraph {quote('cluster_' + ns)} {{")
            lines.append(f'    label={quote(ns)} style="rounded,filled" fillcolor="#f6f8fb" color="#c5d0de";')
            lines.extend("  " + _node(n) for n in nodes)
            lines.append("  }")
    else:
        lines.extend(_node(n) for n in graph.nodes)
    lines.extend(_edge(graph, e) for e in graph.edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def run_dot(source: str, *, timeout: float = TIMEOUT_SECONDS) -> bytes | None:
    binary = dot_binary()
    if binary is None:
        return None
    try:
        done = subprocess.run(
            [binary, "-Tsvg"], input=source.encode("utf-8"), capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0 or not done.stdout.strip():
        return None
    return done.stdout


_DOC_START = re.compile(rb"(?=<\?xml )")


def run_dot_batch(sources: list[str], *, timeout: float = TIMEOUT_SECONDS) -> list[bytes | None]:
    """Several graphs through one dot process (its start-up, ~15 ms, dwarfs a small layout).

    dot writes one SVG document per input graph; if the count does not match (a graph failed),
    each graph is run on its own so only the failing one falls back.
    """
    if len(sources) == 1:
        return [run_dot(sources[0], timeout=timeout)]
    whole = run_dot("".join(sources), timeout=timeout)
    if whole is None:
        return [None] * len(sources)
    docs = [d for d in _DOC_START.split(whole) if d.strip()]
    if len(docs) == len(sources):
        return docs
    return [run_dot(s, timeout=timeout) for s in sources]
