"""Samples and their sections: N structured outputs of one request, each with an id, a text and its record.

A sample's sections come from its markdown headings (`#` and `##`, outside fenced code) or, when its text is a JSON
object (or the record's `text` field is one), from the object's named fields. Sections are matched across samples
by name, case and surrounding space ignored, so "## Analysis" in two samples is the same section.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError

PREAMBLE = "Preamble"  # text before the first heading, when it is not blank
WHOLE = "Document"  # the section of a sample without headings
_HEADING = re.compile(r"^ {0,3}(#{1,2})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


@dataclass(frozen=True)
class Section:
    name: str
    text: str

    @property
    def key(self) -> str:
        return section_key(self.name)


@dataclass(frozen=True)
class Sample:
    id: str
    text: str
    sections: tuple[Section, ...]
    record: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    source: str = ""  # "file:line" for error messages

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)


def section_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def make_sample(sample_id: str, text: str | dict[str, Any], record: dict[str, Any] | None = None,
                source: str = "") -> Sample:
    """A sample from its text (markdown, a JSON object as text, or a dict of named sections)."""
    if isinstance(text, dict):
        sections = _json_sections(text)
        flat = "\n\n".join(f"## {s.name}\n{s.text}" for s in sections)
    else:
        obj = _json_object(text)
        sections = _json_sections(obj) if obj is not None else split_markdown(text)
        flat = text
    return Sample(id=str(sample_id), text=flat, sections=sections, record=dict(record or {}), source=source)


def split_markdown(text: str) -> tuple[Section, ...]:
    """Sections at `#`/`##` headings (deeper headings stay inside their section; headings in code fences are
    code). Repeated names get a ` (2)` suffix so every section keeps its text."""
    chunks: list[tuple[str, list[str]]] = []
    current: tuple[str, list[str]] = (PREAMBLE, [])
    in_fence = None
    for line in text.splitlines():
        fence = _FENCE.match(line)
        if fence:
            in_fence = None if in_fence == fence.group(1) else (in_fence or fence.group(1))
        m = _HEADING.match(line) if in_fence is None and not fence else None
        if m:
            chunks.append(current)
            current = (m.group(2).strip(), [])
        else:
            current[1].append(line)
    chunks.append(current)
    if len(chunks) == 1:
        return (Section(WHOLE, text.strip()),) if text.strip() else ()
    out = []
    seen: dict[str, int] = {}
    for name, lines in chunks:
        body = "\n".join(lines).strip()
        if name == PREAMBLE and not body:
            continue
        key = section_key(name)
        seen[key] = seen.get(key, 0) + 1
        out.append(Section(name if seen[key] == 1 else f"{name} ({seen[key]})", body))
    return tuple(out)


def _json_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return None
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _json_sections(obj: dict[str, Any]) -> tuple[Section, ...]:
    out = []
    for name, value in obj.items():
        body = value if isinstance(value, str) else json.dumps(value, indent=1, sort_keys=True)
        out.append(Section(str(name), body.strip()))
    return tuple(out)


def load_samples(path: str | Path) -> list[Sample]:
    """Read `{"id": ..., "text": ..., "score": ...}` lines (other fields are kept in `Sample.record` for scorers).

    Blank lines are skipped. A line that is not a JSON object, lacks `id`/`text`, or repeats an id raises
    `DataError` naming the file and line. Scores are checked by the scorer, which knows which field it needs.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("the samples file does not exist; give a jsonl file with one "
                        '{"id": ..., "text": ..., "score": ...} object per line.', path=str(path))
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError("is not UTF-8 text; samples must be a jsonl file.", path=str(path)) from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"is not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON "
                            'object such as {"id": "a", "text": "...", "score": 0.5}.',
                            path=str(path), line=lineno) from None
        if not isinstance(rec, dict):
            raise DataError(f"is a JSON {type(rec).__name__}, not an object with id, text and score.",
                            path=str(path), line=lineno)
        missing = [k for k in ("id", "text") if k not in rec]
        if missing:
            raise DataError(f"has no {' or '.join(repr(m) for m in missing)} field; every sample needs an id, "
                            "a text and a score.", path=str(path), line=lineno)
        if not isinstance(rec["text"], (str, dict)):
            raise DataError(f"'text' is a {type(rec['text']).__name__}; give a string (markdown or a JSON object "
                            "as text) or an object of named sections.", path=str(path), line=lineno)
        sid = str(rec["id"])
        if sid in seen:
            raise DataError(f"repeats id {sid!r} (first on line {seen[sid]}); sample ids must be unique.",
                            path=str(path), line=lineno)
        seen[sid] = lineno
        samples.append(make_sample(sid, rec["text"], rec, source=f"{path}:{lineno}"))
    if not samples:
        raise DataError("holds no samples; give at least one JSON object per line.", path=str(path))
    return samples


def finite_number(value: Any) -> float | None:
    """`value` as a float when it is a finite real number (bools are not scores)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
