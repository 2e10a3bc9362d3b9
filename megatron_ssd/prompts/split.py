"""Deterministic train / held-out split by a keyed hash of the problem id (stable under reordering and additions)."""
from __future__ import annotations

import hashlib

from ..problems import Problem


def stable_unit(key: str, salt: str) -> float:
    """Map a key to [0, 1) with SHA-256; identical on every machine and Python version."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_heldout(problems: list[Problem], fraction: float, seed: int) -> tuple[list[Problem], list[Problem]]:
    """Return (train, heldout): exactly round(fraction * len) problems with the smallest keyed hashes are held out."""
    order = sorted(problems, key=lambda p: stable_unit(p.problem_id, f"split-{seed}"))
    n_heldout = round(fraction * len(problems))
    heldout_ids = {p.problem_id for p in order[:n_heldout]}
    train = [p for p in problems if p.problem_id not in heldout_ids]
    heldout = [p for p in problems if p.problem_id in heldout_ids]
    return train, heldout
