"""The report leads with the decision axes (issue #17 item 4) and shows its statistics honestly (#14): a run
directory with a declared comparator file, a 10% anchor-data mix, stage times and a collapse battery."""
import json
import re

from megatron_ssd.evaluation.decisions.verdict import decide
from megatron_ssd.evaluation.report import render_report

from test_stages import fake_summary, write_eval

DECISION_ORDER = ["Run", "pass@1: change against the base model", "Per-difficulty change",
                  "pass@4: does diversity survive", "Anti-collapse battery",
                  "Device-hours and accuracy per device-hour", "Pareto comparison",
                  "Precondition verdict and rollback"]
ZERO_WIDTH = re.compile(r"\[\s*([+-]?[0-9.]+)\s*,\s*\1\s*\]")


def decision_run(tmp_path, *, arm="minimal", temperature=1.6):
    run_dir = tmp_path / "run"
    ids = [f"p{i}" for i in range(48)]
    base, rows = fake_summary(ids, lambda p: int(p[1:]) % 3)  # every problem: 0, 1 or 2 of 4 samples pass
    write_eval(run_dir, "base", base, rows)
    dec, rows = fake_summary(ids, lambda p: int(p[1:]) % 3 + (int(p[1:]) % 5 == 0),
                             difficulty_of=base["difficulty_of"])
    write_eval(run_dir, "base_T1.6", dec, rows)
    # a varied gain (+1 or +2 of 4 samples): a constant per-problem gain would make a degenerate paired interval
    ssd, rows = fake_summary(ids, lambda p: int(p[1:]) % 3 + 1 + (int(p[1:]) % 2), difficulty_of=base["difficulty_of"])
    write_eval(run_dir, "ssd", ssd, rows)
    (run_dir / "eval" / "ssd" / "collapse.json").write_text(json.dumps({
        "ok": True, "alerts": [], "method": "paired percentile bootstrap over prompts", "ci_level": 0.95,
        "base": {}, "model": {},
        "probes": {"self_bleu": {"base": 0.30, "model": 0.33, "change": 0.1, "ci_low": -0.02, "ci_high": 0.21,
                                 "tolerance": 0.25, "alarm": False, "method": "paired percentile bootstrap"},
                   "refusal_rate": {"base": 0.0, "model": 0.0, "change": 0.0, "ci_low": 0.0, "ci_high": 0.0,
                                    "tolerance": 2.0, "alarm": False, "method": "point estimate"}}}))
    (run_dir / "diagnose").mkdir()
    (run_dir / "diagnose" / "verdict.json").write_text(json.dumps(decide(base)))
    for stage, secs in (("sample", 1800.0), ("pack", 36.0), ("train", 3600.0), ("export", 36.0),
                        ("evaluate", 360.0)):
        (run_dir / stage).mkdir(exist_ok=True)
        (run_dir / stage / ".done").write_text(json.dumps({"seconds": secs, "summary": {"device": "cpu",
                                                                                          "cpu_cores": 2}}))
    (run_dir / "pack" / "meta.json").write_text(json.dumps({"mix": {
        "declared_fraction": 0.1, "realised_fraction": 0.098,
        "sources": [{"name": "anchor-chat", "declared_fraction": 0.1, "realised_fraction": 0.098}]}}))
    comparator = tmp_path / "rsft.json"
    comparator.write_text(json.dumps({"name": "rejection-sampling SFT", "pass_at_k": {"1": 0.40, "4": 0.6},
                                      "cpu_core_hours": 12.0}))
    run_dir.joinpath("manifest.json").write_text(json.dumps({"config": {
        "experiment": "toy", "arm": arm, "sample": {"temperature": temperature}, "eval": {"temperature": 0.7},
        "decision": {"comparator": {"kind": "file", "path": str(comparator)}, "budget_device_hours": 20.0,
                     "rollback": {"base_checkpoint": "Qwen/Qwen3-4B", "restore": "serving.model=Qwen/Qwen3-4B"}}}}))
    return run_dir


def test_the_report_leads_with_the_decision_axes_and_no_interval_is_zero_width(tmp_path):
    run_dir = decision_run(tmp_path)
    out = render_report(run_dir)
    md = (run_dir / "report" / "report.md").read_text()
    html = (run_dir / "report" / "report.html").read_text()
    headings = re.findall(r"^## (.+)$", md, flags=re.M)
    assert headings[:len(DECISION_ORDER)] == DECISION_ORDER
    assert re.findall(r"<h2>(.+?)</h2>", html)[:len(DECISION_ORDER)] == DECISION_ORDER  # same sections
    for text in (md, html):
        assert not ZERO_WIDTH.search(text), ZERO_WIDTH.search(text).group(0)
    first = md[:md.index("## pass@k by arm")]
    for needle in ("no longer the paper's minimal recipe", "9.8% of training tokens", "Holm", "p (Holm)",
                   "comparator: rejection-sampling SFT", "CPU core-hours", "pp per CPU core-hour",
                   "within budget",
                   "**Rollback**: to go back to the base checkpoint, `Qwen/Qwen3-4B`, set `serving.model=Qwen/Qwen3-4B`.",
                   "headroom at the declared k* = 2", "provisional", "ssd − decode-only"):
        assert needle in first, needle
    assert "p_value_like" not in md and "pp per CPU-hour" not in md
    # decode-only makes no model (0 method device-hours): its rate is suppressed, not printed as infinite
    assert re.search(r"decode-only: pass@1 .* not shown: no device-hours were spent", first)
    assert out["metrics"]["ledger/ssd/pp_per_hour"] > 0 and "ledger/decode-only/pp_per_hour" not in out["metrics"]


def test_the_decode_only_arm_is_never_picked_on_the_eval_set(tmp_path):
    run_dir = decision_run(tmp_path, temperature=1.2)  # no base_T1.2 evaluation: decode-only was not run
    out = render_report(run_dir)
    md = (run_dir / "report" / "report.md").read_text()
    assert "decode-only" not in out["arms"]
    assert "decode-only: not run (no `base_T1.2` evaluation at the declared training temperature)" in md
    assert "decode-only (`base_T1.6`)" not in md
