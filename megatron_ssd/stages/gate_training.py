"""The training gate: whether the precondition verdict (`diagnose/verdict.json`) lets an arm spend compute on
sampling and training. The one place this rule lives; the runner asks it before every training stage.

    minimal         trains on GO-SSD
    verifier_aware  trains on GO-SSD or GO-VERIFIER-AWARE-SSD
    decode_only     never trains

Any other value (GO-OTHER, UNDECIDED, INCONCLUSIVE, or one this code does not know) does not allow training. A
`provisional` verdict (few held-out problems) stands: it gates like any other, and the runner says it is provisional.
`force_train=true` overrides a verdict that does not allow it; the runner records the override
(`RunDir.write_training_override`). A verdict that is missing, or that was computed for another config (its
`config_hash` differs from the run's), is bad input: the gate refuses whatever `force_train` says, naming which.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import SSDConfig
from ..errors import SSDError
from ..evaluation.decisions.verdict import GO_SSD, GO_VERIFIER_AWARE
from ..rundir import RunDir

# The stages that spend compute on the way to a trained model (diagnose and evaluate run for every arm).
TRAINING_STAGES = ("sample", "filter", "pack", "train")
ALLOWED_VERDICTS: dict[str, tuple[str, ...]] = {
    "minimal": (GO_SSD,),
    "verifier_aware": (GO_SSD, GO_VERIFIER_AWARE),
    "decode_only": (),
}


@dataclass(frozen=True)
class GateDecision:
    arm: str
    verdict: str
    reason: str
    alternative: str | None
    allowed: bool  # the verdict allows this arm to train
    forced: bool = False  # it does not, but force_train=true overrides it
    force_reason: str = ""
    provisional: bool = False  # the verdict stands, on fewer held-out problems than `verdict.MIN_HELDOUT`

    @property
    def proceed(self) -> bool:
        return self.allowed or self.forced

    def record(self) -> dict[str, Any]:
        """What `RunDir.write_training_override` stores when training is forced."""
        return {"forced": True, "overrode_verdict": self.verdict, "arm": self.arm, "verdict_reason": self.reason,
                "force_reason": self.force_reason}

    def allowed_verdicts(self) -> str:
        return " or ".join(ALLOWED_VERDICTS.get(self.arm, ())) or "no verdict (this arm never trains)"


def decide_training(cfg: SSDConfig, run: RunDir) -> GateDecision:
    """The gate's decision for `cfg.arm` from the run's verdict; SSDError when the verdict is missing or foreign."""
    if cfg.arm == "decode_only":
        return GateDecision(cfg.arm, "n/a", "arm=decode_only evaluates the base model at the training decoding and "
                            "never trains.", "arm=minimal or arm=verifier_aware", allowed=False)
    verdict = run.verdict()
    if verdict is None:
        raise SSDError(f"the training gate found no verdict at {run.verdict_path}: the precondition test has not run "
                       f"for {run.path}. Run `ssd diagnose run_dir={run.path}` (or `ssd run`) first.")
    theirs, ours = verdict.get("config_hash"), run.stored_config_hash()
    if theirs != ours:
        where = "has no config hash (written by an older version)" if theirs is None else \
            f"was computed for another config (hash {str(theirs)[:10]}, this run's is {str(ours)[:10]})"
        raise SSDError(f"the training gate refuses {run.verdict_path}: it {where}, so it says nothing about this "
                       f"run. Delete {run.verdict_path.parent} and rerun `ssd diagnose run_dir={run.path}`.")
    value = str(verdict.get("verdict"))
    allowed = value in ALLOWED_VERDICTS.get(cfg.arm, ())
    return GateDecision(cfg.arm, value, str(verdict.get("reason", "")).strip(), verdict.get("alternative"),
                        allowed=allowed, forced=not allowed and cfg.force_train, force_reason=cfg.force_reason,
                        provisional=bool(verdict.get("provisional")))
