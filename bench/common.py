"""Helpers shared by the benchmarks: timing, tables of figures, generated schemas."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table


def timed(func: Callable[[], object], repeat: int = 3) -> float:
    """Best wall time of `repeat` runs, in seconds (the best run is the least disturbed by noise)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_table(title: str, rows: list[tuple[str, str, str, str]]) -> None:
    """rows: (measure, ours, baseline, ratio)."""
    table = Table(title=title)
    for column in ("measure", "opencampaign", "baseline (same run)", "ratio"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)


def generate_custom_schemas(folder: Path, new_schemas: int = 250, extensions: int = 50) -> None:
    """Custom schemas linked to nms:recipient and to each other, plus extensions of built-ins."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(new_schemas):
        types = ("string", "long", "double", "datetime", "boolean")
        length = ' length="64"'
        attrs = "\n".join(
            f'    <attribute name="field{j}" type="{types[j % 5]}" label="Field {j}"{length if j % 5 == 0 else ""}/>'
            for j in range(12))
        link_prev = f'    <element name="parent" type="link" target="cus:entity{i - 1}" revLink="child{i}"/>' if i else ""
        (folder / f"entity{i}.xml").write_text(f"""<srcSchema name="entity{i}" namespace="cus" label="Entity {i}">
  <enumeration name="status" basetype="byte"><value name="new" value="0"/><value name="done" value="1"/></enumeration>
  <element name="entity{i}" autopk="true" label="Entity {i}">
    <key name="code"><keyfield xpath="@code"/></key>
    <attribute name="code" type="string" length="32"/>
    <attribute name="status" type="byte" enum="status"/>
{attrs}
    <element name="recipient" type="link" target="nms:recipient" revLink="entity{i}"/>
{link_prev}
  </element>
</srcSchema>
""")
    bases = ["nms:recipient", "nms:service", "nms:delivery", "xtk:folder", "nms:subscription"]
    for i in range(extensions):
        base = bases[i % len(bases)]
        name = base.split(":")[1]
        (folder / f"ext{i}.xml").write_text(f"""<srcSchema name="{name}" namespace="ext{i}" extendedSchema="{base}">
  <element name="{name}">
    <attribute name="extA{i}" type="string" length="40" label="Extension A {i}"/>
    <attribute name="extB{i}" type="long" label="Extension B {i}"/>
  </element>
</srcSchema>
""")
