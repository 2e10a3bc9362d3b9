"""The arms an experiment compares, and which eval label holds each: the one definition the report and the
launcher's final panel share.

    base         label ``base``: the base model at the official evaluation decoding
    decode-only  the base model at the training decoding, ``base_T<sample.temperature>``: the temperature is declared
                 before evaluation. A run without that label has no decode-only arm ("not run"); the best
                 ``base_T<t>`` of the T_eval sweep is never picked, because choosing on the eval set flatters it
    ssd          label ``ssd``: the SSD-trained model at the official evaluation decoding
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

ARMS = ("base", "decode-only", "ssd")
SWEEP = re.compile(r"^(base|ssd)_T([0-9]+(?:\.[0-9]+)?)$")


def decode_only_label(summaries: Mapping[str, Mapping[str, Any]], train_temperature: Any) -> str | None:
    """The ``base_T<t>`` label at the declared training temperature, or None (not run)."""
    if train_temperature is None:
        return None
    for lbl in summaries:
        m = SWEEP.match(lbl)
        if m and m.group(1) == "base" and math.isclose(float(m.group(2)), float(train_temperature)):
            return lbl
    return None


def arm_labels(summaries: Mapping[str, Mapping[str, Any]], train_temperature: Any) -> dict[str, str]:
    """{"base": label, "decode-only": label, "ssd": label} for the arms whose label has a summary."""
    out = {}
    if "base" in summaries:
        out["base"] = "base"
    decode = decode_only_label(summaries, train_temperature)
    if decode:
        out["decode-only"] = decode
    if "ssd" in summaries:
        out["ssd"] = "ssd"
    return out
