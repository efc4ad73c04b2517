"""Static description of the data model (Campaign's Structure / Documentation views, diagrams).

`render_pages(registry)` returns every file in memory (served under /datamodel/), and
`build_site(registry, out_dir)` writes the same files to disk; all links are relative.
"""

from .site import build_site, render_pages

__all__ = ["build_site", "render_pages"]
