"""`key=value` arguments of the serving commands (`ssd serve`, `ssd serve-mode`, `ssd canary-replay`,
`ssd canary-report`), typed by a dataclass through OmegaConf, in the same spelling as the pipeline's overrides.

An unknown key is one paragraph naming the closest valid keys; a value of the wrong type names the key and the type.
"""
from __future__ import annotations

import difflib
import sys
from dataclasses import fields
from typing import TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from megatron_ssd.errors import ConfigError

T = TypeVar("T")
HELP_FLAGS = ("-h", "--help")


def wants_help(argv: list[str], usage: str) -> bool:
    """Print `usage` (the command module's docstring) for -h/--help."""
    if any(a in HELP_FLAGS for a in argv):
        sys.stdout.write(usage.strip() + "\n")
        return True
    return False


def parse(schema: type[T], argv: list[str], command: str) -> T:
    keys = [f.name for f in fields(schema)]
    for arg in argv:
        key = arg.split("=", 1)[0]
        if "=" not in arg or key not in keys:
            close = difflib.get_close_matches(key, keys, n=3)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"{command}: {arg!r} is not one of its key=value arguments ({', '.join(keys)}).{hint} "
                              f"See `{command} --help`.")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"{command}: {key}: {getattr(exc, 'msg', exc)}".rstrip() + f" (see `{command} --help`).") \
            from None
