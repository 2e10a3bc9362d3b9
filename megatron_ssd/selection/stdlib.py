"""Does a dotted name exist in Python's standard library (or builtins)?

The standard library is the interpreter's own code, not the target's, so it is checked by importing the module and
walking attributes; modules with side effects on import (opening a browser, a window, printing) are refused rather
than imported. Target code is never imported: see index.py.
"""
from __future__ import annotations

import builtins
import importlib
import sys
from functools import lru_cache

_SIDE_EFFECTS = frozenset({"antigravity", "this", "idlelib", "turtle", "turtledemo", "tkinter", "ensurepip",
                           "venv", "pydoc", "webbrowser", "__main__"})


def is_stdlib_top(name: str) -> bool:
    top = name.split(".")[0]
    return top in sys.stdlib_module_names or top in ("builtins", "__future__")


@lru_cache(maxsize=4096)
def stdlib_has(dotted: str) -> bool | None:
    """True/False for a builtin or standard-library name; None when `dotted` is not a stdlib or builtin name (the
    caller decides what that means) or names a module this check refuses to import."""
    parts = dotted.split(".")
    explicit = parts[0] == "builtins" and len(parts) > 1
    if explicit:
        parts = parts[1:]
    if hasattr(builtins, parts[0]):
        return _walk(builtins, parts)
    if explicit:
        return False
    if not is_stdlib_top(parts[0]):
        return None
    if parts[0] in _SIDE_EFFECTS:
        return None
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except Exception:  # a missing submodule (ModuleNotFoundError) or a platform-only module
            continue
        return _walk(obj, parts[i:])
    return False


def _walk(obj: object, attrs: list[str]) -> bool:
    for attr in attrs:
        if not hasattr(obj, attr):
            return False
        obj = getattr(obj, attr)
    return True
