"""Lazy package exports (PEP 562): a stage package names its public API without
importing its modules, so importing one module of a package does not import the
others and no import cycle forms through a package's ``__init__``."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def exports(package: str, **modules: str) -> tuple[Callable[[str], object], list[str]]:
    """``(__getattr__, __all__)`` of ``package`` exporting, for each ``submodule=``, the
    space-separated names given."""
    names = {name: module for module, listed in modules.items() for name in listed.split()}

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(names)
