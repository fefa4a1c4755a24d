"""Lazy package exports (PEP 562): a stage package names its public API without
importing its modules, so importing one module of a package does not import the
others and no import cycle forms through a package's ``__init__``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def exports(package: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package`` for ``{name: submodule}``."""

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
