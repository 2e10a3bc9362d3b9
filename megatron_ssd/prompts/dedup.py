"""Exact and near-duplicate removal over prompt text.

Exact duplicates: identical after normalisation (Unicode NFKC, lower-case, whitespace collapsed). Near duplicates:
MinHash LSH (datasketch) over word 5-gram shingles at a Jaccard threshold; the first occurrence in source order
is kept, so the result is deterministic.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH

from ..problems import Problem

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def normalize_text(text: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def words(text: str) -> list[str]:
    return _WORD.findall(normalize_text(text))


def shingles(text: str, n: int = 5) -> set[str]:
    w = words(text)
    if len(w) < n:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


def _minhash(text: str, num_perm: int) -> MinHash:
    m = MinHash(num_perm=num_perm, seed=1)
    m.update_batch([s.encode("utf-8") for s in shingles(text)])
    return m


@dataclass
class DedupResult:
    kept: list[Problem]
    exact_duplicates: dict[str, str]  # dropped id -> kept id
    near_duplicates: dict[str, str]


def dedup(problems: list[Problem], *, threshold: float = 0.8, num_perm: int = 128) -> DedupResult:
    exact: dict[str, str] = {}
    by_digest: dict[str, str] = {}
    unique: list[Problem] = []
    for p in problems:
        digest = hashlib.sha256(normalize_text(p.question + "\n" + p.starter_code).encode()).hexdigest()
        if digest in by_digest:
            exact[p.problem_id] = by_digest[digest]
            continue
        by_digest[digest] = p.problem_id
        unique.append(p)

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    near: dict[str, str] = {}
    kept: list[Problem] = []
    for p in unique:
        m = _minhash(p.question, num_perm)
        hits = lsh.query(m)
        if hits:
            near[p.problem_id] = sorted(hits)[0]
            continue
        lsh.insert(p.problem_id, m)
        kept.append(p)
    return DedupResult(kept=kept, exact_duplicates=exact, near_duplicates=near)
