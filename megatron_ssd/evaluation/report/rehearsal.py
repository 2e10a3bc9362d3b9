"""The first lines of a rehearsal's report (`rehearsal=true`, config/rehearsal.py): what the rehearsal changed in
the preset, read from manifest.json, before any number, so that nobody takes its numbers for a result."""
from __future__ import annotations

from typing import Any

from ...config.rehearsal import changes_from_manifest
from .loading import RunData
from .rendering import Doc

TITLE_PREFIX = "REHEARSAL - not a result"


def report_title(data: RunData, title: str) -> str:
    return f"{TITLE_PREFIX}: {title}" if changes_from_manifest(data.manifest) is not None else title


def rehearsal_section(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    changes = changes_from_manifest(data.manifest)
    if changes is None:
        return
    metrics["rehearsal"] = {"changes": len(changes)}
    doc.h(TITLE_PREFIX)
    doc.p(f"**This run is a rehearsal of the preset, not a result.** A tiny random model of the preset's class ran "
          f"the whole chain on scaled data and settings; its numbers say nothing about SSD. The {len(changes)} "
          "values it changed (also in manifest.json, \"rehearsal\"):")
    doc.ul([f"`{c['key']}`: `{c['preset']!r}` -> `{c['rehearsal']!r}` ({c['why']})" for c in changes])
