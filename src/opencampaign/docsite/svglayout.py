"""Built-in SVG layout, used when Graphviz is not installed (or fails), so the site always renders.

Layered grid layout: a table's layer is the length of the longest chain of links leaving it, so
referenced tables sit above the tables that point to them; a layer wider than the grid wraps onto
several rows. All boxes share one slot size, which leaves free horizontal gaps between rows and
free vertical channels between columns: connectors are elbows that only travel in those gaps and
channels, so they never cross a box. Linear in the number of tables and links.
"""

from __future__ import annotations

import math
import zlib

from lxml import etree

from .graph import Graph, Node

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
MARGIN = 40  # > COL_GAP / 2 so the outer channels stay inside the picture
COL_GAP = 48
ROW_GAP = 56
HEADER_H = 36
ROW_H = 16
MIN_W, MAX_W = 150, 260
CHAR_W = 6.8  # average advance of the 11-12px sans-serif text used below
PALETTE = ["#dbe7f5", "#e3f1de", "#f6e3ef", "#fbefd5", "#e6e1f5", "#dcf0f0", "#f3e6dc", "#e9ecef"]
STYLE = """
text { font-family: Helvetica, Arial, sans-serif; fill: #1f2d3d; }
.title { font-size: 12px; font-weight: bold; }
.sub { font-size: 10px; fill: #4a5a6a; }
.col { font-size: 10px; }
.card { font-size: 10px; fill: #33475b; }
rect.box { fill: #fff; stroke: #7b8a9a; }
rect.focus { stroke: #c77700; stroke-width: 2; }
path.edge { fill: none; stroke: #5b6b7f; stroke-width: 1.2; }
a:hover rect.box { stroke: #1f5fa8; stroke-width: 2; }
"""


def _fit(text: str, width: float, char_w: float = CHAR_W) -> str:
    room = max(4, int((width - 12) / char_w))
    return text if len(text) <= room else text[: room - 1] + "…"


def _height(node: Node) -> int:
    return HEADER_H + ROW_H * len(node.columns) + (4 if node.columns else 0)


def _column_text(node: Node, i: int) -> str:
    column = node.columns[i]
    return {"pk": "PK ", "fk": "FK ", "pkfk": "PK FK "}[column.kind] + column.sqlname


def _layers(graph: Graph) -> dict[str, int]:
    """Longest path to a sink; back edges of cycles are ignored (iterative DFS, no recursion limit)."""
    out: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for e in graph.edges:
        if e.src != e.dst and e.src in out and e.dst in out:
            out[e.src].append(e.dst)
    level: dict[str, int] = {}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for start in out:
        if start in state:
            continue
        stack = [(start, iter(out[start]))]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                state[node] = 2
                level[node] = max((level[c] + 1 for c in out[node] if state.get(c) == 2 and c in level), default=0)
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(out[child])))
    return level


def _columns(graph: Graph) -> int:
    return max(3, min(10, math.ceil(math.sqrt(max(1, len(graph.nodes))) * 1.3)))


def _grid(graph: Graph) -> list[list[Node]]:
    level = _layers(graph)
    by_level: dict[int, list[Node]] = {}
    for node in graph.nodes:
        by_level.setdefault(level[node.id], []).append(node)
    cols = _columns(graph)
    targets: dict[str, list[str]] = {}
    for e in graph.edges:
        targets.setdefault(e.src, []).append(e.dst)
    position: dict[str, float] = {}
    rows: list[list[Node]] = []
    for lvl in sorted(by_level):
        # barycentre of the already placed targets keeps linked tables near each other
        def key(n: Node) -> tuple[float, str, str]:
            placed = [position[t] for t in targets.get(n.id, []) if t in position]
            return (sum(placed) / len(placed) if placed else cols / 2, n.namespace, n.id)

        members = sorted(by_level[lvl], key=key)
        for i in range(0, len(members), cols):
            row = members[i : i + cols]
            offset = (cols - len(row)) // 2
            for j, node in enumerate(row):
                position[node.id] = offset + j
            rows.append(row)
    return rows


class _Layout:
    def __init__(self, graph: Graph):
        self.graph = graph
        widest = max(
            [len(n.title) * 7.4 for n in graph.nodes]
            + [len(n.subtitle) * 6.2 for n in graph.nodes]
            + [len(_column_text(n, i)) * 6.2 for n in graph.nodes for i in range(len(n.columns))]
            + [0]
        )
        self.box_w = int(min(MAX_W, max(MIN_W, widest + 16)))
        self.rows = _grid(graph)
        self.cols = _columns(graph)
        self.place: dict[str, tuple[int, int, float, float]] = {}  # id -> row, col, x, y
        self.row_top: list[float] = []
        self.row_h: list[float] = []
        y = MARGIN + ROW_GAP / 2
        for r, row in enumerate(self.rows):
            offset = (self.cols - len(row)) // 2
            self.row_top.append(y)
            self.row_h.append(max(_height(n) for n in row))
            for j, node in enumerate(row):
                col = offset + j
                self.place[node.id] = (r, col, self.col_x(col), y)
            y += self.row_h[-1] + ROW_GAP
        self.width = 2 * MARGIN + self.cols * self.box_w + (self.cols - 1) * COL_GAP
        self.height = y - ROW_GAP / 2 + MARGIN

    def col_x(self, col: int) -> float:
        return MARGIN + col * (self.box_w + COL_GAP)

    def channel_x(self, between: float) -> float:
        """x of the free vertical channel nearest to `between` (channel k lies left of column k)."""
        k = round((between - MARGIN + COL_GAP / 2) / (self.box_w + COL_GAP))
        k = max(0, min(self.cols, k))
        return MARGIN + k * (self.box_w + COL_GAP) - COL_GAP / 2


def _ports(layout: _Layout) -> dict[tuple[int, str], float]:
    """Spread the edge ends sharing a box side evenly along it, ordered by the other end's x."""
    sides: dict[tuple[str, str], list[tuple[float, int, str]]] = {}
    for i, e in enumerate(layout.graph.edges):
        if e.src == e.dst or e.src not in layout.place or e.dst not in layout.place:
            continue
        sr, _, sx, _ = layout.place[e.src]
        tr, _, tx, _ = layout.place[e.dst]
        src_side = "bottom" if tr > sr else "top"
        dst_side = "top" if tr >= sr else "bottom"
        sides.setdefault((e.src, src_side), []).append((tx, i, "src"))
        sides.setdefault((e.dst, dst_side), []).append((sx, i, "dst"))
    ports: dict[tuple[int, str], float] = {}
    for (node_id, _side), ends in sides.items():
        x = layout.place[node_id][2]
        ends.sort()
        for k, (_, i, role) in enumerate(ends):
            ports[(i, role)] = x + (k + 1) * layout.box_w / (len(ends) + 1)
    return ports


def _route(layout: _Layout, i: int, ports: dict[tuple[int, str], float]) -> list[tuple[float, float]]:
    e = layout.graph.edges[i]
    sr, _, sx0, sy = layout.place[e.src]
    tr, _, _, ty = layout.place[e.dst]
    sh = _height(layout.graph.node(e.src))  # type: ignore[arg-type]
    th = _height(layout.graph.node(e.dst))  # type: ignore[arg-type]
    if e.src == e.dst:
        right = sx0 + layout.box_w
        return [(right, sy + 10), (right + 14, sy + 10), (right + 14, sy + 26), (right, sy + 26)]
    sx, tx = ports[(i, "src")], ports[(i, "dst")]
    lane = ((i % 7) - 3) * 4
    if tr <= sr:  # up (or along the gap above the shared row)
        gap1 = layout.row_top[sr] - ROW_GAP / 2 + lane
        if tr == sr:
            return [(sx, sy), (sx, gap1), (tx, gap1), (tx, ty)]
        end = (tx, ty + th)
        if tr == sr - 1:
            return [(sx, sy), (sx, gap1), (tx, gap1), end]
        gap2 = layout.row_top[tr] + layout.row_h[tr] + ROW_GAP / 2 + lane
    else:  # down
        gap1 = layout.row_top[sr] + layout.row_h[sr] + ROW_GAP / 2 + lane
        sy = sy + sh
        end = (tx, ty)
        if tr == sr + 1:
            return [(sx, sy), (sx, gap1), (tx, gap1), end]
        gap2 = layout.row_top[tr] - ROW_GAP / 2 + lane
    cx = layout.channel_x((sx + tx) / 2) + lane
    return [(sx, sy), (sx, gap1), (cx, gap1), (cx, gap2), (tx, gap2), end]


def _sub(parent: etree._Element, name: str, text: str | None = None, **attrs: object) -> etree._Element:
    node = etree.SubElement(parent, f"{{{SVG_NS}}}{name}", {k.rstrip("_").replace("_", "-"): str(v) for k, v in attrs.items()})
    if text is not None:
        node.text = text
    return node


def _colour(namespace: str) -> str:
    return PALETTE[zlib.crc32(namespace.encode()) % len(PALETTE)]


def layout_svg(graph: Graph) -> bytes:
    layout = _Layout(graph)
    svg = etree.Element(f"{{{SVG_NS}}}svg", nsmap={None: SVG_NS, "xlink": XLINK_NS})
    svg.set("width", str(int(layout.width)))
    svg.set("height", str(int(layout.height)))
    svg.set("viewBox", f"0 0 {int(layout.width)} {int(layout.height)}")
    _sub(svg, "title", f"Data model diagram: {graph.name}")
    _sub(svg, "style", STYLE)
    marker = _sub(_sub(svg, "defs"), "marker", id="arrow", viewBox="0 0 10 10", refX=9, refY=5,
                  markerWidth=7, markerHeight=7, orient="auto")
    _sub(marker, "path", d="M0,0 L10,5 L0,10 z", fill="#5b6b7f")
    edges = _sub(svg, "g", class_="edges")
    ports = _ports(layout)
    for i, e in enumerate(graph.edges):
        if e.src not in layout.place or e.dst not in layout.place:
            continue
        points = _route(layout, i, ports)
        group = _sub(edges, "g")
        _sub(group, "title", e.tooltip or f"{e.src} → {e.dst}")
        d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)
        _sub(group, "path", class_="edge", d=d, marker_end="url(#arrow)")
        (x0, y0), (x1, y1) = points[0], points[-1]
        tail, _, head = e.cardinality.partition("-")
        up0 = points[1][1] < y0
        _sub(group, "text", tail, class_="card", x=f"{x0 + 3:.1f}", y=f"{y0 - 4 if up0 else y0 + 11:.1f}")
        up1 = points[-2][1] < y1
        _sub(group, "text", head, class_="card", x=f"{x1 + 3:.1f}", y=f"{y1 - 4 if up1 else y1 + 11:.1f}")
    nodes = _sub(svg, "g", class_="nodes")
    for node in graph.nodes:
        _, _, x, y = layout.place[node.id]
        link = _sub(nodes, "a", href=node.href, target="_top")
        link.set(f"{{{XLINK_NS}}}href", node.href)
        _sub(link, "title", node.tooltip or node.id)
        h = _height(node)
        _sub(link, "rect", class_="box focus" if node.focus else "box", x=x, y=y, width=layout.box_w, height=h, rx=4)
        _sub(link, "rect", x=x + 0.5, y=y + 0.5, width=layout.box_w - 1, height=HEADER_H - 1, rx=4,
             fill="#fde9c8" if node.focus else _colour(node.namespace))
        _sub(link, "text", _fit(node.title, layout.box_w, 7.4), class_="title", x=x + 6, y=y + 15)
        _sub(link, "text", _fit(node.subtitle, layout.box_w, 6.2), class_="sub", x=x + 6, y=y + 29)
        for k in range(len(node.columns)):
            _sub(link, "text", _fit(_column_text(node, k), layout.box_w, 6.2), class_="col",
                 x=x + 8, y=y + HEADER_H + 13 + k * ROW_H)
    return etree.tostring(svg, xml_declaration=True, encoding="utf-8", pretty_print=True)
