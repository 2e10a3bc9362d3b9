"""Which checkpoint answers a call: the four modes and the canary's stable hash.

- `shadow`: base answers every call; the same call also goes to SSD, whose answer is logged, never returned.
- `canary`: a share of routing keys goes to SSD. The key is the caller's: the OpenAI `user` field, else the
  `X-SSD-Routing-Key` header, else the request id (then every call is its own key). A key's bucket is a 64-bit
  hash, salted per run directory so that two experiments draw independent populations, mapped to [0, 1); it goes
  to SSD when the bucket is below `share`. The same key always lands in the same bucket, so a user stays on one
  checkpoint, and raising the share only adds users to SSD (nobody moves back).
- `base` / `ssd`: every call to one checkpoint: the rollback and the full promotion.

Only the key's hash is logged (`key_hash`, the same salted digest): pseudonymous, not anonymous, since a short
user id can be recovered by trying candidates.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

BASE, SSD = "base", "ssd"
CHECKPOINTS = (BASE, SSD)
SHADOW, CANARY = "shadow", "canary"
MODES = (SHADOW, CANARY, BASE, SSD)
KEY_HEADER = "x-ssd-routing-key"


@dataclass(frozen=True)
class Route:
    primary: str  # the checkpoint whose answer is returned (before any fallback)
    shadow: bool  # also send the call to SSD and log its answer


def check_mode(mode: Any, share: Any) -> tuple[str, float]:
    """A valid (mode, share) or ValueError saying what is allowed."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: choose one of {', '.join(MODES)}.")
    try:
        value = float(share)
    except (TypeError, ValueError):
        raise ValueError(f"share={share!r}: a number between 0 and 1 (the fraction of routing keys sent to SSD "
                         "in canary mode).") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"share={share!r}: must lie between 0 and 1 (0.05 sends 5% of routing keys to SSD).")
    return str(mode), value


def routing_key(body: Mapping[str, Any], headers: Mapping[str, str], request_id: str) -> tuple[str, str]:
    """(key, where it came from: "user" | "header" | "request_id")."""
    user = body.get("user")
    if isinstance(user, str) and user:
        return user, "user"
    header = headers.get(KEY_HEADER)
    if header:
        return header, "header"
    return request_id, "request_id"


def key_digest(key: str, salt: str) -> str:
    """The salted hash of a routing key, as logged (16 hex digits)."""
    return hashlib.sha256(f"{salt}\x1f{key}".encode("utf-8")).hexdigest()[:16]


def bucket(digest: str) -> float:
    """A key's position in [0, 1), uniform over keys."""
    return int(digest, 16) / float(1 << 64)


def route(mode: str, share: float, digest: str) -> Route:
    if mode == SHADOW:
        return Route(BASE, True)
    if mode == CANARY:
        return Route(SSD if bucket(digest) < share else BASE, False)
    if mode in CHECKPOINTS:
        return Route(mode, False)
    raise ValueError(f"unknown mode {mode!r}")
