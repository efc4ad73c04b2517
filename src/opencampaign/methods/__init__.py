"""Method implementations, one module per schema (`xtk_session.py` implements `xtk:session#...`).

Importing this package imports every module in it, so each registers its implementations in
`registry.REGISTRY`: a new `methods/<ns>_<schema>.py` needs no other change.
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")
