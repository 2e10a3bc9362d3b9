"""What a section of a plan claims about code: the entities it names, the dependencies it states, what it changes.

Deliberately literal (regular expressions over prose, no model): a reference is a `backticked` identifier or
path, a dotted name (`pkg.mod.func`), a call (`func()`), a snake_case word, or a `.py` path. Stated dependencies are
"X calls Y", "X invokes Y", "X imports Y", "X is called/imported by Y" and "changing X affects Y"; entities to
change follow a change verb ("modify `X`", "rename the method `Y`"). Fenced code blocks are skipped: code a plan
proposes is new by definition, so its names would read as invented. Prose naming code without any of these marks
is invisible here; docs/SELECTION.md lists the limits.
"""
from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

_BT = r"`[^`\n]+`"
_PATH = r"(?<![\w/.])(?:[\w.-]+/)*[\w-]+\.py\b"
_DOTTED = r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?"
_CALLED = r"\b[A-Za-z_]\w*\(\)"
_SNAKE = r"(?<![\w.])(?=\w*_)(?=\w*[A-Za-z])[A-Za-z_]\w*\b"
REF = rf"(?:{_BT}|{_PATH}|{_DOTTED}|{_CALLED}|{_SNAKE})"
_REFLIST = rf"{REF}(?:\s*,\s*(?:and\s+|or\s+)?{REF}|\s+(?:and|or)\s+{REF})*"
_KIND_WORDS = r"(?:(?:the|a|its|function|method|class|module|file|package|constructor|attribute|helper)\s+)*"

_REF_RE = re.compile(REF)
_DEP_RE = re.compile(
    rf"(?P<src>{REF})\s+{_KIND_WORDS}(?:(?i:also|directly|only|still|now|already)\s+)?"
    rf"(?P<verb>(?i:calls|invokes|imports|is\s+called\s+by|is\s+invoked\s+by|is\s+imported\s+by))\s+"
    rf"{_KIND_WORDS}(?P<dst>{_REFLIST})")
_AFFECT_RE = re.compile(
    rf"(?i:changing|modifying|editing|changes\s+to|a\s+change\s+to)\s+{_KIND_WORDS}(?P<src>{REF})\s+"
    rf"(?:(?i:will|would|also|directly|transitively|can|may)\s+)*(?i:affects?|impacts?|breaks?)\s+"
    rf"{_KIND_WORDS}(?P<dst>{_REFLIST})")
_CHANGE_RE = re.compile(
    r"(?i:\b(?:change|modify|edit|update|rename|refactor|remove|delete|replace|rewrite|patch|fix|extend)"
    r"(?:s|d|es|ed|ing)?)\s+"
    rf"{_KIND_WORDS}(?i:(?:signature|body|behaviou?r|return\s+type|implementation)\s+of\s+{_KIND_WORDS})?"
    rf"(?P<dst>{_REFLIST})")
_FENCED = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.S | re.M)
_URL = re.compile(r"\w+://\S+")
_IDENT = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_LEADING_CALL = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")
_STOP = frozenset({*keyword.kwlist, *keyword.softkwlist, "self", "cls"})


@dataclass(frozen=True)
class Ref:
    """A reference: `kind` is "entity" (a dotted or bare name) or "path" (a file or package path)."""
    kind: str
    name: str


@dataclass(frozen=True)
class Dependency:
    kind: str  # calls | imports | affects (src's change reaches dst)
    src: Ref
    dst: Ref
    phrase: str


@dataclass(frozen=True)
class SectionClaims:
    refs: tuple[Ref, ...]  # every distinct reference, sorted (dependency and change endpoints included)
    dependencies: tuple[Dependency, ...]
    changes: tuple[Ref, ...]

    @property
    def has_code_claims(self) -> bool:
        return bool(self.refs)

    def to_dict(self) -> dict[str, object]:
        return {"refs": [f"{r.kind}:{r.name}" for r in self.refs],
                "dependencies": [{"kind": d.kind, "src": d.src.name, "dst": d.dst.name, "phrase": d.phrase}
                                 for d in self.dependencies],
                "changes": [r.name for r in self.changes]}


def normalize_ref(raw: str) -> Ref | None:
    """A reference from one matched span, or None when the span is not a code reference (prose, an expression
    whose callee cannot be read, a keyword, a one-letter name)."""
    backticked = raw.startswith("`") and raw.endswith("`") and len(raw) > 1
    text = raw[1:-1].strip() if backticked else raw
    text = text.rstrip(".,:;")
    if backticked and "/" in text and " " not in text:
        return Ref("path", text.rstrip("/"))
    if text.endswith(".py"):
        return Ref("path", text)
    if text.endswith("()"):
        text = text[:-2]
    if backticked and not _IDENT.match(text):
        call = _LEADING_CALL.match(text)  # `func(a, b)` names func
        if not call:
            return None
        text = call.group(1)
    for prefix in ("self.", "cls."):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if not _IDENT.match(text) or text in _STOP:
        return None
    parts = text.split(".")
    if len(text) < 2 or (not backticked and len(parts) > 1 and min(len(p) for p in parts) < 2):
        return None  # "x", and prose abbreviations such as e.g / i.e
    return Ref("entity", text)


def _refs_in(span: str) -> list[Ref]:
    return [r for r in (normalize_ref(m.group(0)) for m in _REF_RE.finditer(span)) if r is not None]


def extract_claims(text: str) -> SectionClaims:
    prose = _URL.sub(" ", _FENCED.sub(" ", text))
    refs: set[Ref] = set(_refs_in(prose))
    deps: list[Dependency] = []
    changes: set[Ref] = set()
    for m in _DEP_RE.finditer(prose):
        src = normalize_ref(m.group("src"))
        verb = " ".join(m.group("verb").lower().split())
        for dst in _refs_in(m.group("dst")):
            if src is None:
                continue
            kind = "imports" if "import" in verb else "calls"
            a, b = (dst, src) if verb.startswith("is ") else (src, dst)  # "X is called by Y": Y calls X
            deps.append(Dependency(kind, a, b, " ".join(m.group(0).split())))
    for m in _AFFECT_RE.finditer(prose):
        src = normalize_ref(m.group("src"))
        if src is None:
            continue
        changes.add(src)
        for dst in _refs_in(m.group("dst")):
            deps.append(Dependency("affects", src, dst, " ".join(m.group(0).split())))
    for m in _CHANGE_RE.finditer(prose):
        changes.update(_refs_in(m.group("dst")))
    for d in deps:
        refs.update((d.src, d.dst))
    refs |= changes
    key = lambda r: (r.kind, r.name)  # noqa: E731
    unique_deps = sorted(set(deps), key=lambda d: (d.kind, d.src.name, d.dst.name, d.phrase))
    return SectionClaims(tuple(sorted(refs, key=key)), tuple(unique_deps), tuple(sorted(changes, key=key)))
