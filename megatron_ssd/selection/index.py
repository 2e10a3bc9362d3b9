"""A static index of a Python codebase: entities, import graph and call graph, from `ast` alone.

The target code is parsed, never imported or executed, so indexing an untrusted or broken repository is safe and
cheap (a few thousand files in seconds). Calls are resolved through the module's imports and aliases, `self`/`cls`
and `super()` within a class (following resolved base classes), and nested definitions. What static analysis cannot
know is counted, never guessed: a call on a local value or an expression (`x.append()`, `f()()`) is *dynamic*, a
name bound nowhere is *unbound*. Files that cannot be indexed (do not parse, binary, undecodable, symlink loops) are
skipped and named in `CodebaseIndex.skipped`; they are never fatal.
"""
from __future__ import annotations

import ast
import builtins
import os
import tokenize
from collections import defaultdict
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import SSDError

SKIP_DIRS = frozenset({"__pycache__", "site-packages", "node_modules"})
BUILTIN_NAMES = frozenset(dir(builtins))
SCOPE_KINDS = ("module", "class", "function", "method")
_MAX_HOPS = 16  # re-export chains longer than this are treated as cycles
DYNAMIC = "<dynamic>"


@dataclass(frozen=True)
class Entity:
    qualname: str
    kind: str  # module | class | function | method | attribute | parameter
    file: str  # relative to the index root
    line: int


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass
class CallCounts:
    """How the call sites of the codebase resolved; `dynamic + unbound` is what the graph does not know."""
    internal: int = 0
    external: int = 0
    dynamic: int = 0
    unbound: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"internal": self.internal, "external": self.external, "dynamic": self.dynamic,
                "unbound": self.unbound}


@dataclass
class CodebaseIndex:
    """Entities by qualified name plus the import and call graphs between them.

    `imports[m]`: the fully qualified names module `m` imports (`import a.b` -> `a.b`; `from a import f` -> `a.f`),
    internal or not. `calls[q]`: what the function, method or module-level code `q` calls: an internal entity's
    qualname, or an external dotted name as written through the imports (`numpy.zeros`, `builtins.len`).
    `unbound[q]`: names `q` calls that are bound nowhere (counted in `call_counts`, never guessed).
    """
    root: Path | None
    entities: dict[str, Entity] = field(default_factory=dict)
    imports: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    calls: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    unbound: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    call_counts: CallCounts = field(default_factory=CallCounts)
    skipped: list[SkippedFile] = field(default_factory=list)
    # internals used for resolution
    symbols: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    bases: dict[str, list[str]] = field(default_factory=dict)
    _by_last: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    _callers: dict[str, set[str]] | None = None
    _importers: dict[str, set[str]] | None = None

    # ------------------------------------------------------------------------------------------ queries
    @property
    def modules(self) -> dict[str, str]:
        return {q: e.file for q, e in self.entities.items() if e.kind == "module"}

    def module_of(self, qualname: str) -> str | None:
        parts = qualname.split(".")
        for i in range(len(parts), 0, -1):
            prefix = ".".join(parts[:i])
            ent = self.entities.get(prefix)
            if ent is not None and ent.kind == "module":
                return prefix
        return None

    def is_internal(self, dotted: str) -> bool:
        return self.module_of(dotted) is not None

    def resolve(self, name: str) -> tuple[str, ...]:
        """The entities a reference may mean: its exact qualname (following re-exports), else every entity whose
        qualname ends with `.name` (a unique suffix match is a resolution; several are all returned)."""
        name = name.strip(".")
        exact = self.canonical(name)
        if exact is not None and exact in self.entities:
            return (exact,)
        last = name.rsplit(".", 1)[-1]
        suffix = "." + name
        return tuple(sorted(q for q in self._by_last.get(last, ()) if q.endswith(suffix) or q == name))

    def resolve_path(self, path: str) -> tuple[str, ...]:
        """Modules whose file is `path` or ends with `/path` (a plan names files relative to anywhere)."""
        path = path.strip().lstrip("./")
        if not path:
            return ()
        hits = []
        for q, ent in self.entities.items():
            if ent.kind != "module":
                continue
            f = ent.file
            if f == path or f.endswith("/" + path):
                hits.append(q)
            elif not path.endswith(".py") and (f.endswith("/" + path + "/__init__.py") or f == path + "/__init__.py"):
                hits.append(q)
        return tuple(sorted(hits))

    def canonical(self, dotted: str, _hops: int = 0) -> str | None:
        """The internal entity `dotted` names after following module re-exports and class inheritance; the name
        itself when it is not internal (external); None when an internal module or class has no such member;
        `DYNAMIC` for a member of a value (an attribute's attribute) that static analysis cannot know."""
        if dotted in self.entities:
            return dotted
        if _hops > _MAX_HOPS:
            return None
        parts = dotted.split(".")
        for i in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:i])
            ent = self.entities.get(prefix)
            if ent is None:
                continue
            head, rest = parts[i], parts[i + 1:]
            if ent.kind == "module":
                target = self.symbols.get(prefix, {}).get(head)
                if target is None or target == f"{prefix}.{head}":
                    return None  # (a longer prefix would have matched an indexed submodule or definition)
                return self.canonical(".".join([target, *rest]), _hops + 1)
            if ent.kind == "class":
                member = self.class_member(prefix, head)
                if member is None:
                    return DYNAMIC if self._has_outside_base(prefix) else None
                return member if not rest else self.canonical(".".join([member, *rest]), _hops + 1)
            return DYNAMIC  # a member of a function, parameter or attribute: not statically known
        return dotted  # no internal prefix: external

    def class_member(self, cls: str, name: str, _seen: frozenset[str] = frozenset()) -> str | None:
        """`cls.name` looked up through the class's resolved bases, depth first (close enough to the MRO)."""
        if f"{cls}.{name}" in self.entities:
            return f"{cls}.{name}"
        if cls in _seen:
            return None
        for base in self.bases.get(cls, ()):
            if base in self.entities and self.entities[base].kind == "class":
                hit = self.class_member(base, name, _seen | {cls})
                if hit is not None:
                    return hit
        return None

    def _has_outside_base(self, cls: str, _seen: frozenset[str] = frozenset()) -> bool:
        """Whether `cls` inherits from a class outside the index (whose members are unknown here)."""
        if cls in _seen:
            return False
        for base in self.bases.get(cls, ()):
            ent = self.entities.get(base)
            if ent is None or ent.kind != "class" or self._has_outside_base(base, _seen | {cls}):
                return True
        return False

    def callers(self, qualname: str) -> set[str]:
        if self._callers is None:
            self._callers = defaultdict(set)
            for caller, callees in self.calls.items():
                for callee in callees:
                    self._callers[callee].add(caller)
                    init = f"{callee}.__init__"
                    if init in self.entities:  # constructing a class calls its __init__
                        self._callers[init].add(caller)
        return self._callers.get(qualname, set())

    def importers(self, qualname: str) -> set[str]:
        if self._importers is None:
            self._importers = defaultdict(set)
            for mod, names in self.imports.items():
                for name in names:
                    target = self.canonical(name)
                    self._importers[name].add(mod)
                    if target is not None and target != name:
                        self._importers[target].add(mod)
        return self._importers.get(qualname, set())

    def impact(self, qualname: str, depth: int) -> dict[str, int]:
        """What changing `qualname` can affect: transitive callers and importers up to `depth` edges, with the
        distance of each. The entity itself is not included."""
        seen: dict[str, int] = {qualname: 0}
        frontier = [qualname]
        for d in range(1, depth + 1):
            nxt = []
            for node in frontier:
                for up in sorted(self.callers(node) | self.importers(node)):
                    if up not in seen:
                        seen[up] = d
                        nxt.append(up)
            frontier = nxt
        seen.pop(qualname)
        return seen

    def calls_from(self, qualname: str) -> set[str]:
        """Calls made by `qualname` and everything defined inside it (a class: its methods; a module: all)."""
        prefix = qualname + "."
        out = set(self.calls.get(qualname, ()))
        for caller, callees in self.calls.items():
            if caller.startswith(prefix):
                out |= callees
        return out

    def summary(self) -> dict[str, object]:
        kinds: dict[str, int] = defaultdict(int)
        for ent in self.entities.values():
            kinds[ent.kind] += 1
        return {"root": str(self.root) if self.root else None, "entities": dict(sorted(kinds.items())),
                "import_edges": sum(len(v) for v in self.imports.values()),
                "call_edges": sum(len(v) for v in self.calls.values()),
                "calls": self.call_counts.to_dict(),
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped]}


# ---------------------------------------------------------------------------------------------- building
def build_index(root: str | os.PathLike, *, package: str | None = None) -> CodebaseIndex:
    """Index every `.py` file under `root`. Module names are relative to the first ancestor that is not a package
    (so indexing `repo/pkg/` names modules `pkg.x`); `package` overrides the dotted name of `root` itself (for
    namespace packages such as `megatron.core`). Hidden directories, `__pycache__`, `site-packages` and
    `node_modules` are not walked."""
    root = Path(root)
    if not root.exists():
        raise SSDError(f"--repo {str(root)!r} does not exist. Give the path of a directory holding the Python "
                       "codebase the samples talk about.")
    if not root.is_dir():
        raise SSDError(f"--repo {str(root)!r} is not a directory. Give the directory holding the Python codebase.")
    root = root.resolve()
    if package is None:
        base = root
        while (base / "__init__.py").is_file() and base.parent != base:
            base = base.parent
        prefix = ".".join(root.relative_to(base).parts)
    else:
        prefix = package
    index = CodebaseIndex(root=root)
    sources: list[tuple[str, str, str]] = []
    for path, skip_reason in _walk_python_files(root):
        rel = path.relative_to(root).as_posix() if skip_reason != "symlink loop" else str(path)
        if skip_reason:
            index.skipped.append(SkippedFile(rel, skip_reason))
            continue
        text, reason = _read_source(path)
        if text is None:
            index.skipped.append(SkippedFile(rel, reason))
            continue
        sources.append((_module_name(prefix, path.relative_to(root)), rel, text))
    if not sources:
        raise SSDError(f"--repo {str(root)!r} holds no readable Python files (.py) outside hidden directories, "
                       "__pycache__ and site-packages; point it at the codebase the samples talk about."
                       + (f" Skipped: {', '.join(s.path for s in index.skipped[:5])}." if index.skipped else ""))
    _index_sources(index, sources)
    return index


def build_index_from_sources(sources: dict[str, str], *,
                             star_imports: dict[str, list[str]] | None = None) -> CodebaseIndex:
    """Index in-memory modules `{module name: source}` (code samples, starter code); the file is `<name>.py`.
    `star_imports[m]` lists modules whose public names `m` sees as if it began with `from x import *` (a program
    assembled from starter code and a completion)."""
    index = CodebaseIndex(root=None)
    _index_sources(index, [(name, f"{name.replace('.', '/')}.py", text) for name, text in sources.items()],
                   star_imports or {})
    return index


def _index_sources(index: CodebaseIndex, sources: list[tuple[str, str, str]],
                   star_imports: dict[str, list[str]] | None = None) -> None:
    trees: list[tuple[str, str, ast.Module, bool]] = []
    for module, rel, text in sorted(sources):
        try:
            tree = ast.parse(text, filename=rel)
        except (SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", None)
            index.skipped.append(SkippedFile(rel, f"does not parse (line {line}: {getattr(exc, 'msg', exc)})"))
            continue
        is_pkg = rel.endswith("__init__.py")
        _add(index, Entity(module, "module", rel, 1))
        trees.append((module, rel, tree, is_pkg))
    for module, rel, tree, is_pkg in trees:
        _Definitions(index, module, rel, is_pkg).visit_module(tree)
    for module, extra in (star_imports or {}).items():
        syms = index.symbols[module]
        syms["__star__"] = ",".join(filter(None, [syms.get("__star__", ""), *extra]))
    _expand_star_imports(index, trees)
    for cls, raw in list(index.bases.items()):
        index.bases[cls] = [c or b for c, b in ((index.canonical(b), b) for b in raw)]
    for module, rel, tree, is_pkg in trees:
        _Calls(index, module).run(tree)


def _add(index: CodebaseIndex, ent: Entity) -> None:
    if ent.qualname in index.entities:
        return
    index.entities[ent.qualname] = ent
    index._by_last[ent.qualname.rsplit(".", 1)[-1]].append(ent.qualname)


def _walk_python_files(root: Path) -> Iterator[tuple[Path, str]]:
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            yield Path(dirpath).relative_to(root) if Path(dirpath) != root else Path("."), "symlink loop"
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = Path(dirpath) / name
            if not path.exists():
                yield path, "broken symlink"
                continue
            rp = os.path.realpath(path)
            if rp in seen_files:
                continue  # the same file reached through a symlink: index it once
            seen_files.add(rp)
            yield path, ""


def _read_source(path: Path) -> tuple[str | None, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    if b"\0" in data:
        return None, "binary file (NUL bytes)"
    try:
        encoding, _ = tokenize.detect_encoding(BytesIO(data).readline)
        return data.decode(encoding), ""
    except (SyntaxError, UnicodeDecodeError, LookupError):
        return None, "not decodable as source text"


def _module_name(prefix: str, rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(p for p in [prefix, *parts] if p)


# ------------------------------------------------------------------------------------- pass 1: definitions
class _Definitions:
    """Entities, module symbol tables (what each top-level name is bound to) and imports."""

    def __init__(self, index: CodebaseIndex, module: str, rel: str, is_pkg: bool):
        self.index, self.module, self.rel = index, module, rel
        self.package = module if is_pkg else module.rpartition(".")[0]
        self.stars: list[str] = []

    def visit_module(self, tree: ast.Module) -> None:
        syms = self.index.symbols[self.module]
        self._body(tree.body, self.module, "module", syms)
        syms.setdefault("__star__", ",".join(self.stars))

    def _body(self, body: Iterable[ast.stmt], scope: str, kind: str, syms: dict[str, str] | None) -> None:
        for node in body:
            self._stmt(node, scope, kind, syms)

    def _stmt(self, node: ast.stmt, scope: str, kind: str, syms: dict[str, str] | None) -> None:
        idx = self.index
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            q = f"{scope}.{node.name}"
            _add(idx, Entity(q, "method" if kind == "class" else "function", self.rel, node.lineno))
            if syms is not None:
                syms[node.name] = q
            args = node.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if a is not None:
                    _add(idx, Entity(f"{q}.{a.arg}", "parameter", self.rel, a.lineno))
            for sub in ast.walk(node):  # self.x = ... in a method makes x an attribute of the class
                if kind == "class" and isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store) \
                        and isinstance(sub.value, ast.Name) and sub.value.id == "self":
                    _add(idx, Entity(f"{scope}.{sub.attr}", "attribute", self.rel, sub.lineno))
            self._body(node.body, q, "function", None)
        elif isinstance(node, ast.ClassDef):
            q = f"{scope}.{node.name}"
            _add(idx, Entity(q, "class", self.rel, node.lineno))
            if syms is not None:
                syms[node.name] = q
            idx.bases[q] = [self._qualify(d) for d in (_dotted(b) for b in node.bases) if d]
            self._body(node.body, q, "class", None)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                idx.imports[self.module].add(alias.name)
                if syms is not None:
                    if alias.asname:
                        syms[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        syms.setdefault(top, top)
        elif isinstance(node, ast.ImportFrom):
            base = self._from_base(node)
            for alias in node.names:
                if alias.name == "*":
                    self.stars.append(base)
                    idx.imports[self.module].add(base)
                    continue
                full = f"{base}.{alias.name}" if base else alias.name
                idx.imports[self.module].add(full)
                if syms is not None:
                    syms[alias.asname or alias.name] = full
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and kind in ("module", "class"):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for name in _store_names(t):
                    _add(idx, Entity(f"{scope}.{name}", "attribute", self.rel, node.lineno))
                    if syms is not None:
                        syms.setdefault(name, f"{scope}.{name}")
        else:  # if/try/with/for blocks at module or class level still define names
            for fld in ("body", "orelse", "finalbody"):
                self._body(getattr(node, fld, None) or [], scope, kind, syms)
            for handler in getattr(node, "handlers", None) or []:
                self._body(handler.body, scope, kind, syms)

    def _from_base(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = self.package.split(".") if self.package else []
        parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
        return ".".join([*parts, *([node.module] if node.module else [])])

    def _qualify(self, dotted: str) -> str:
        head, _, rest = dotted.partition(".")
        target = self.index.symbols[self.module].get(head)
        if target is None:
            return f"builtins.{dotted}" if head in BUILTIN_NAMES else f"{self.module}.{dotted}"
        return f"{target}.{rest}" if rest else target


def _expand_star_imports(index: CodebaseIndex, trees: list) -> None:
    """`from m import *` binds m's public names (its `__all__` is not evaluated); iterate to a fixed point."""
    for _ in range(_MAX_HOPS):
        changed = False
        for module, *_ in trees:
            syms = index.symbols[module]
            for src in filter(None, syms.get("__star__", "").split(",")):
                for name, target in list(index.symbols.get(src, {}).items()):
                    if not name.startswith("_") and name not in syms:
                        syms[name] = target
                        changed = True
        if not changed:
            return


# ------------------------------------------------------------------------------------------ pass 2: calls
class _Calls:
    """Resolve every call site to an internal entity, an external dotted name, or count it as dynamic/unbound."""

    def __init__(self, index: CodebaseIndex, module: str):
        self.index, self.module = index, module
        self.syms = index.symbols[module]

    def run(self, tree: ast.Module) -> None:
        self._scope(tree.body, self.module, [], cls=None, self_name=None)

    def _scope(self, body: list[ast.stmt], qual: str, locals_stack: list[tuple[str, set[str]]], cls: str | None,
               self_name: str | None) -> None:
        for node in body:
            self._walk(node, qual, locals_stack, cls, self_name)

    def _walk(self, node: ast.AST, qual: str, stack: list[tuple[str, set[str]]], cls: str | None,
              self_name: str | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for d in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
                if d is not None:
                    self._walk(d, qual, stack, cls, self_name)
            fq = f"{qual}.{node.name}"
            bound, local_imports = _bound_names(node, self.index, self.module)
            args = [*node.args.posonlyargs, *node.args.args]
            is_method = cls is not None and qual == cls
            static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
            first = args[0].arg if is_method and args and not static else None
            self._scope(node.body, fq, [*stack, (fq, bound, local_imports)], cls,
                        first if is_method else self_name)
            return
        if isinstance(node, ast.ClassDef):
            for d in [*node.decorator_list, *node.bases, *node.keywords]:
                self._walk(d, qual, stack, cls, self_name)
            cq = f"{qual}.{node.name}"
            self._scope(node.body, cq, stack, cq, None)
            return
        if isinstance(node, ast.Call):
            self._record(node.func, qual, stack, cls, self_name)
        for child in ast.iter_child_nodes(node):
            self._walk(child, qual, stack, cls, self_name)

    def _record(self, func: ast.expr, caller: str, stack, cls: str | None, self_name: str | None) -> None:
        idx, counts = self.index, self.index.call_counts
        target = self._resolve_callee(func, stack, cls, self_name)
        if target is None:
            counts.dynamic += 1
        elif target.startswith("?"):
            counts.unbound += 1
            idx.unbound[caller].add(target[1:])
        else:
            idx.calls[caller].add(target)
            if idx.is_internal(target):
                counts.internal += 1
            else:
                counts.external += 1

    def _resolve_callee(self, func: ast.expr, stack, cls: str | None, self_name: str | None) -> str | None:
        """An entity or external name; None for dynamic; '?name' for an unbound name."""
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call) and \
                isinstance(func.value.func, ast.Name) and func.value.func.id == "super" and cls:
            for base in self.index.bases.get(cls, ()):
                hit = self.index.class_member(base, func.attr) if base in self.index.entities else None
                if hit:
                    return hit
            return None  # inherited from outside the index (or missing): not known statically
        dotted = _dotted(func)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        for scope_q, bound, local_imports in reversed(stack):
            if head in local_imports:
                target = local_imports[head]
                full = f"{target}.{rest}" if rest else target
                resolved = self.index.canonical(full)
                return "?" + full if resolved is None else None if resolved == DYNAMIC else resolved
            if head in bound:
                if head == self_name and cls and rest and "." not in rest:
                    return self.index.class_member(cls, rest) or None
                nested = f"{scope_q}.{head}"
                if nested in self.index.entities and not rest:
                    return nested
                return None  # a local value: what it holds is not known statically
        target = self.syms.get(head)
        if target is None:
            if head in BUILTIN_NAMES:
                return f"builtins.{dotted}"
            return "?" + dotted
        full = f"{target}.{rest}" if rest else target
        resolved = self.index.canonical(full)
        if resolved is None:
            return "?" + full  # an internal module or class without that member
        return None if resolved == DYNAMIC else resolved


def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _store_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _store_names(elt)
    elif isinstance(target, ast.Starred):
        yield from _store_names(target.value)


def _bound_names(fn: ast.FunctionDef | ast.AsyncFunctionDef, index: CodebaseIndex,
                 module: str) -> tuple[set[str], dict[str, str]]:
    """Every name the function binds anywhere inside it (an over-approximation: nested scopes included), and
    those bound by its own imports, mapped to what they import."""
    out: set[str] = set()
    imports: dict[str, str] = {}
    for node in ast.walk(fn):
        if node is fn:
            args = fn.args
            out |= {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a}
            continue
        if isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                index.imports[module].add(a.name)
                imports[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for a in node.names:
                if a.name != "*":
                    index.imports[module].add(f"{node.module}.{a.name}")
                    imports[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.ExceptHandler) and node.name:
            out.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            out.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            out.add(node.rest)
        elif isinstance(node, ast.ImportFrom):  # relative import inside a function: rare; a local value
            out |= {a.asname or a.name for a in node.names}
    return out - set(imports), imports
