"""Per-section grounding of a plan in a codebase index: three separate ratios, never summed.

- existence: references that resolve (to an indexed entity or file, a builtin or a standard-library name) over all
  checkable references. A name under a third-party package the codebase imports (`torch.nn.Module`) is *external*:
  listed, not checked, not counted.
- dependency truth: stated edges ("X calls Y", "X imports Y", "changing X affects Y") present in the call graph,
  the import graph, or the impact set, over all stated edges. An edge with an endpoint that does not resolve is false.
- impact coverage: for the entities the section proposes to change, the transitive callers and importers (up to
  `GroundingConfig.impact_depth` edges) that the section names, over all of them. Naming a module or class covers
  its members; naming a member of an importing module covers that module.

A ratio with nothing to count is None ("not claimed"), and a section with no code references at all is
"not grounded": silence is not a score of zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..errors import ConfigError
from .claims import Dependency, Ref, SectionClaims, extract_claims
from .index import CodebaseIndex
from .samples import Sample
from .stdlib import stdlib_has

METRICS = ("existence", "dependency", "impact")


@dataclass(frozen=True)
class GroundingConfig:
    impact_depth: int = 2  # edges of callers/importers followed from each entity a section changes

    def __post_init__(self):
        if not isinstance(self.impact_depth, int) or self.impact_depth < 1:
            raise ConfigError(f"impact_depth={self.impact_depth!r}: give an integer >= 1 (edges of callers and "
                              "importers followed from each changed entity).")


@dataclass(frozen=True)
class Ratio:
    hit: int
    total: int

    @property
    def value(self) -> float:
        return self.hit / self.total

    def __str__(self) -> str:
        return f"{self.hit}/{self.total}"


@dataclass(frozen=True)
class RefStatus:
    ref: Ref
    status: str  # resolved | unresolved | external
    targets: tuple[str, ...] = ()  # internal entities (or the stdlib name) it resolved to


@dataclass(frozen=True)
class SectionGrounding:
    section: str
    existence: Ratio | None = None
    dependency: Ratio | None = None
    impact: Ratio | None = None
    unresolved: tuple[str, ...] = ()
    external: tuple[str, ...] = ()
    false_dependencies: tuple[str, ...] = ()
    missed_impact: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def grounded(self) -> bool:
        return any(getattr(self, m) is not None for m in METRICS)

    def metric(self, name: str) -> Ratio | None:
        return getattr(self, name)

    def to_dict(self) -> dict[str, object]:
        def ratio(r: Ratio | None):
            return None if r is None else {"hit": r.hit, "total": r.total, "value": r.value}
        return {"section": self.section, "grounded": self.grounded,
                **{m: ratio(self.metric(m)) for m in METRICS},
                "unresolved": list(self.unresolved), "external": list(self.external),
                "false_dependencies": list(self.false_dependencies), "missed_impact": list(self.missed_impact),
                "notes": list(self.notes)}


@dataclass
class Grounder:
    """Grounds sections against one index; resolution is cached, so grounding N samples costs one index."""
    index: CodebaseIndex
    config: GroundingConfig = field(default_factory=GroundingConfig)
    _cache: dict[Ref, RefStatus] = field(default_factory=dict)
    _external_tops: frozenset[str] | None = None

    def ground_sample(self, sample: Sample) -> list[SectionGrounding]:
        return [self.ground_section(s.name, extract_claims(s.text)) for s in sample.sections]

    def ground_section(self, name: str, claims: SectionClaims) -> SectionGrounding:
        if not claims.has_code_claims:
            return SectionGrounding(name, notes=("no code references",))
        statuses = {r: self.status(r) for r in claims.refs}
        checked = [s for s in statuses.values() if s.status != "external"]
        existence = Ratio(sum(s.status == "resolved" for s in checked), len(checked)) if checked else None
        dep_ratio, false_deps = self._dependencies(claims.dependencies, statuses)
        impact, missed = self._impact(claims, statuses)
        return SectionGrounding(
            name, existence, dep_ratio, impact,
            unresolved=tuple(sorted(r.name for r, s in statuses.items() if s.status == "unresolved")),
            external=tuple(sorted(r.name for r, s in statuses.items() if s.status == "external")),
            false_dependencies=false_deps, missed_impact=missed)

    # ------------------------------------------------------------------------------------- references
    def status(self, ref: Ref) -> RefStatus:
        hit = self._cache.get(ref)
        if hit is None:
            hit = self._cache[ref] = self._status(ref)
        return hit

    def _status(self, ref: Ref) -> RefStatus:
        if ref.kind == "path":
            mods = self.index.resolve_path(ref.name)
            return RefStatus(ref, "resolved" if mods else "unresolved", mods)
        targets = self.index.resolve(ref.name)
        if targets:
            return RefStatus(ref, "resolved", targets)
        in_stdlib = stdlib_has(ref.name)
        if in_stdlib is not None:
            return RefStatus(ref, "resolved" if in_stdlib else "unresolved", (ref.name,) if in_stdlib else ())
        if ref.name.split(".")[0] in self.external_tops and "." in ref.name:
            return RefStatus(ref, "external")
        return RefStatus(ref, "unresolved")

    @property
    def external_tops(self) -> frozenset[str]:
        """First components of third-party names the codebase imports, and the aliases it binds them to."""
        if self._external_tops is None:
            tops = {n.split(".")[0] for names in self.index.imports.values() for n in names
                    if not self.index.is_internal(n)}
            for syms in self.index.symbols.values():
                tops |= {alias for alias, target in syms.items() if target.split(".")[0] in tops}
            self._external_tops = frozenset(tops)
        return self._external_tops

    # ------------------------------------------------------------------------------------ dependencies
    def _dependencies(self, deps: Sequence[Dependency], statuses: dict[Ref, RefStatus]):
        if not deps:
            return None, ()
        false = []
        for d in deps:
            if not self._edge_holds(d, statuses):
                false.append(f"{d.src.name} {d.kind} {d.dst.name}")
        return Ratio(len(deps) - len(false), len(deps)), tuple(sorted(set(false)))

    def _edge_holds(self, dep: Dependency, statuses: dict[Ref, RefStatus]) -> bool:
        ix = self.index
        src = [t for t in statuses[dep.src].targets if ix.is_internal(t)]
        dst_status = statuses[dep.dst]
        if not src or dst_status.status == "unresolved":
            return False
        dst = set(dst_status.targets)
        outside = dep.dst.name if dst_status.status != "resolved" or not any(map(ix.is_internal, dst)) else None

        def matches(name: str) -> bool:
            canon = ix.canonical(name) or name
            if canon in dst or name in dst:
                return True
            return outside is not None and (name == outside or name.endswith("." + outside)
                                            or name.startswith(outside + "."))
        if dep.kind == "calls":
            return any(matches(c) or any(c == f"{d}.__init__" for d in dst) for s in src for c in ix.calls_from(s))
        if dep.kind == "imports":
            mods = {s if ix.entities[s].kind == "module" else ix.module_of(s) for s in src}
            return any(matches(n) or any(n.startswith(d + ".") for d in dst)
                       for m in mods for n in ix.imports.get(m, ()))
        return any(d in ix.impact(s, self.config.impact_depth) for s in src for d in dst)  # affects

    # ------------------------------------------------------------------------------------------ impact
    def _impact(self, claims: SectionClaims, statuses: dict[Ref, RefStatus]):
        ix = self.index
        targets = {t for r in claims.changes for t in statuses[r].targets if ix.is_internal(t)}
        if not targets:
            return None, ()
        affected: set[str] = set()
        for t in sorted(targets):
            affected |= set(ix.impact(t, self.config.impact_depth))
        affected -= targets
        if not affected:
            return None, ()
        named = {t for s in statuses.values() for t in s.targets}
        covering = {n for n in named if n in ix.entities and ix.entities[n].kind in ("module", "class")}
        named_modules = {ix.module_of(n) for n in named}

        def covered_by_name(a: str) -> bool:
            if a in named or any(a.startswith(c + ".") for c in covering):
                return True
            return ix.entities[a].kind == "module" and a in named_modules  # an importer, via a named member
        covered = {a for a in affected if covered_by_name(a)}
        return Ratio(len(covered), len(affected)), tuple(sorted(affected - covered))


def ground_samples(samples: Sequence[Sample], index: CodebaseIndex,
                   config: GroundingConfig | None = None) -> dict[str, list[SectionGrounding]]:
    """Grounding of every sample's sections, keyed by sample id (order of the input does not matter)."""
    grounder = Grounder(index, config or GroundingConfig())
    return {s.id: grounder.ground_sample(s) for s in sorted(samples, key=lambda s: s.id)}
