"""Command-line overrides checked against the config schema before Hydra composes anything.

Hydra refuses a key the structured config lacks, but with its own multi-line message, exit status 1 and the advice
to append the key with `+`, which the schema refuses too. A sweep (`ssd run -m sample.nonexistent_key=1,2`) fails
the same way before its first point. This names the key and the closest valid ones in one paragraph instead.
"""
from __future__ import annotations

import difflib

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from megatron_ssd.config import SSDConfig
from megatron_ssd.errors import ConfigError

SUGGESTIONS = 4


def schema_keys() -> dict[str, object]:
    """Every key of the schema, dotted (sections and leaves) -> its default; a list is one leaf (`data.mix`)."""
    out: dict[str, object] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                out[prefix + key] = value
                walk(value, f"{prefix}{key}.")

    walk(OmegaConf.to_container(OmegaConf.structured(SSDConfig)), "")
    return out


def _known(key: str, keys: dict[str, object]) -> bool:
    """`key` names a schema key, or reaches into a list of one (`data.mix.0.weight`)."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in keys:
            return i == len(parts) or isinstance(keys[prefix], list)
    return False


def unknown_key_message(key: str, keys: dict[str, object], sweep: bool) -> str:
    leaves = [k for k, v in keys.items() if not isinstance(v, dict)]
    close = difflib.get_close_matches(key, leaves, n=SUGGESTIONS, cutoff=0.6)
    section = key.split(".")[0]
    if close:
        hint = f"the closest valid keys are {', '.join(close)}"
    elif isinstance(keys.get(section), dict):
        hint = f"the keys of {section} are {', '.join(k for k in leaves if k.rpartition('.')[0] == section)}"
    else:
        hint = f"the sections are {', '.join(k for k, v in keys.items() if '.' not in k and isinstance(v, dict))}"
    what = "the sweep over it cannot start" if sweep else "it cannot be set"
    return (f"{key} is not a config key, so {what}; {hint}. Nothing was started and no run directory was created. "
            "`ssd --cfg job` prints every key with its value; the fields are defined in megatron_ssd/config/.")


def is_override(arg: str) -> bool:
    """A command-line word that is a Hydra override (`key=value`), not a flag."""
    return "=" in arg and not arg.startswith("-")


def override_key(override: str) -> str:
    """The key an override sets (`+a.b=1`, `~a.b` -> `a.b`)."""
    return override.lstrip("+~").split("=", 1)[0]


def check_overrides(args: list[str]) -> None:
    """Raise `ConfigError` for the first override whose key the schema lacks. Hydra's own keys (`hydra.*`), group
    choices (`hydra/launcher=...`, `model@pkg=...`), deletions and flags are left to Hydra, as is a syntax error."""
    candidates = [a for a in args if is_override(a)]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except HydraException:
        return  # Hydra reports its own parse errors
    keys = schema_keys()
    for o in overrides:
        key = o.key_or_group
        if o.is_delete() or o.package is not None or "/" in key or key == "hydra" or key.startswith("hydra."):
            continue
        if not _known(key, keys):
            raise ConfigError(unknown_key_message(key, keys, sweep=o.is_sweep_override()))
