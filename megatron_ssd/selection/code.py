"""The same diagnostic for N code samples of one problem, grounded in the standard library and the starter code.

Best-of-N by a declared scalar (for example mean token log-probability) picks one program; this reports, per
top-level definition of the programs (plus their imports and module-level code), which imports and calls resolve
to a builtin, a standard-library name, the starter code or the program's own definitions. Calls on values (`x.append`)
are dynamic and not counted; a third-party import is unresolved (the problem promises the standard library and the
starter code only). Give whole programs (starter code + completion, code already extracted from the response);
the starter code's public names are visible to each program as if star-imported.
"""
from __future__ import annotations

import ast
from typing import Any, Mapping, Sequence

from ..errors import DataError
from .gaps import DEFAULT_THRESHOLD, GapReport, build_report
from .grounding import Ratio, SectionGrounding
from .index import CodebaseIndex, build_index_from_sources
from .samples import Sample, Section, finite_number
from .scorers import select_top1
from .stdlib import stdlib_has

STARTER, SOLUTION = "starter", "solution"
IMPORTS, MODULE_CODE = "imports", "module code"


def diagnose_code_samples(samples: Sequence[Mapping[str, Any]], starter_code: str = "", *, scalar: str = "score",
                          threshold: float = DEFAULT_THRESHOLD, picked_by: str | None = None) -> GapReport:
    """`samples`: mappings with `id`, `code` and the declared scalar field `scalar` (higher is better). Returns the
    gap report between the top-1 by that scalar and the per-section best-grounded program."""
    records: list[Sample] = []
    for i, rec in enumerate(samples):
        if "id" not in rec or not isinstance(rec.get("code"), str):
            raise DataError(f"code sample #{i} needs an 'id' and a string 'code' (the whole program).")
        if finite_number(rec.get(scalar)) is None:
            raise DataError(f"code sample {rec['id']!r} has no finite {scalar!r}; give the declared scalar that "
                            "picks top-1 (e.g. mean token log-probability) for every sample.")
        records.append(Sample(str(rec["id"]), rec["code"], (Section(SOLUTION, rec["code"]),), dict(rec)))
    if len({s.id for s in records}) != len(records):
        raise DataError("code sample ids must be unique.")
    selection = select_top1(records, lambda s: float(s.record[scalar]))
    selection = type(selection)(scalar, selection.selected, selection.scores, selection.ranking, selection.tied)
    groundings = {s.id: ground_program(s.text, starter_code) for s in records}
    return build_report(selection, groundings, threshold=threshold, picked_by=picked_by)


def ground_program(code: str, starter_code: str = "") -> list[SectionGrounding]:
    """Existence grounding of one program's imports and calls, one section per top-level definition."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError) as exc:
        return [SectionGrounding("program", notes=(f"does not parse (line {getattr(exc, 'lineno', None)}: "
                                                   f"{getattr(exc, 'msg', exc)})",))]
    index = build_index_from_sources({STARTER: starter_code, SOLUTION: code}, star_imports={SOLUTION: [STARTER]})
    top_defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    out = [_section(IMPORTS, [_import_status(index, n) for n in sorted(index.imports.get(SOLUTION, ()))])]
    for name in dict.fromkeys(top_defs):
        out.append(_section(name, _call_statuses(index, f"{SOLUTION}.{name}", subtree=True)))
    out.append(_section(MODULE_CODE, _call_statuses(index, SOLUTION, subtree=False)))
    notes = tuple(f"starter code {s.reason}" for s in index.skipped)
    return [g if not notes else SectionGrounding(g.section, g.existence, notes=g.notes + notes,
                                                 unresolved=g.unresolved) for g in out]


def _section(name: str, statuses: list[tuple[str, bool]]) -> SectionGrounding:
    if not statuses:
        return SectionGrounding(name, notes=("no imports or statically resolvable calls",))
    hit = sum(ok for _, ok in statuses)
    return SectionGrounding(name, existence=Ratio(hit, len(statuses)),
                            unresolved=tuple(sorted({n for n, ok in statuses if not ok})))


def _import_status(index: CodebaseIndex, name: str) -> tuple[str, bool]:
    return name, index.is_internal(name) or bool(stdlib_has(name))


def _call_statuses(index: CodebaseIndex, qual: str, *, subtree: bool) -> list[tuple[str, bool]]:
    callers = [c for c in set(index.calls) | set(index.unbound)
               if c == qual or (subtree and c.startswith(qual + "."))]
    out = []
    for c in sorted(callers):
        for callee in sorted(index.calls.get(c, ())):
            out.append((callee, index.is_internal(callee) or bool(stdlib_has(callee))))
        out += [(n, False) for n in sorted(index.unbound.get(c, ()))]
    return out
