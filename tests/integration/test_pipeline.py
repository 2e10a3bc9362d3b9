"""`ssd run` end to end on the embedded default at a tiny size: real vLLM, real Megatron-core, real sandbox.

A local two-point sweep (`ssd run -m sample.temperature=1.1,1.5`, Hydra's basic launcher) runs prompts -> diagnose
-> sample -> pack -> train -> export -> evaluate -> report at each point, the second reusing the first's base-model
evaluation; `ssd sweep-summary` reads the two points together; a rerun of one point does nothing and prints the same
table. Numbers at this size say nothing about SSD; the tests check the wiring and the artifacts.
"""
import json

import pytest

from embedded import TINY, ssd

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
STAGES = ("prompts", "diagnose", "sample", "pack", "train", "export", "evaluate", "report")


def ssd_run(run_dir, *extra):
    return ssd("run", f"run_dir={run_dir}", *TINY, *extra)


def test_two_point_sweep_summary_then_noop_rerun(embedded_sweep):
    runs, hydra_dir, points, first = (embedded_sweep.runs, embedded_sweep.hydra_dir, embedded_sweep.points,
                                      embedded_sweep.result)
    assert (hydra_dir / "multirun.yaml").is_file()  # Hydra's sweep record, outside the repository
    for t_train, point in points.items():
        for stage in STAGES:
            assert (point / stage / ".done").exists(), (point, stage)
        for label in ("base", f"base_T{t_train:g}", "ssd"):
            summary = json.loads((point / "eval" / label / "summary.json").read_text())
            assert summary["num_problems"] == 4 and set(summary["pass_at_k"]) == {"1", "2"}
            assert sum(1 for _ in open(point / "eval" / label / "results.jsonl")) == 8

    # The base model at the official decoding was evaluated once, by the first point, and copied into the second.
    first_point, second_point = first.stderr.split(f"run directory: {points[1.5]}")
    assert f"run directory: {points[1.1]}" in first_point
    reused = "eval/base: already evaluated"
    assert reused not in first_point.split("sample the frozen model")[0]  # point 1's diagnose computed it
    assert reused in second_point.split("sample the frozen model")[0]  # point 2's diagnose found it in the cache
    base = [(points[t] / "eval" / "base" / "summary.json").read_bytes() for t in (1.1, 1.5)]
    assert base[0] == base[1]
    cached = [p for p in (runs / ".base_eval_cache").iterdir() if p.is_dir()]
    assert len(cached) == 3  # base (shared), base_T1.1, base_T1.5

    run_dir = points[1.1]
    verdict = json.loads((run_dir / "diagnose" / "verdict.json").read_text())
    assert verdict["verdict"] in ("GO-SSD", "GO-VERIFIER-AWARE-SSD", "GO-OTHER", "UNDECIDED", "INCONCLUSIVE")
    if verdict["verdict"] != "GO-SSD":  # the embedded default forces training past it, and says so everywhere
        override = json.loads((run_dir / "diagnose" / "override.json").read_text())
        assert override["forced"] and override["overrode_verdict"] == verdict["verdict"]
        assert "TRAINING FORCED" in first_point
    assert (run_dir / "report" / "report.md").exists() and (run_dir / "report" / "report.html").exists()
    # Locks and forks (eval.mechanism, on in the embedded default): both models teacher-forced, exactly
    mechanism = json.loads((run_dir / "eval" / "mechanism.json").read_text())
    assert mechanism["exact"] and mechanism["problems"] == 4 and mechanism["settings"]["sequences"] == 8
    assert mechanism["frontier_test"]["reading"] in ("beyond", "indistinguishable", "inside", "out_of_range",
                                                     "no_tail")
    assert mechanism["positions"]["total"] == sum(mechanism["positions"][c] for c in ("lock", "fork", "other"))
    assert f"locks and forks: {mechanism['sentence'][:60]}" in " ".join(first_point.split())
    report_md = (run_dir / "report" / "report.md").read_text()
    assert "## Locks and forks" in report_md and mechanism["sentence"] in report_md
    if mechanism["frontier_test"].get("frontier"):
        assert (run_dir / "report" / "plots" / "mechanism_frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert list((run_dir / "export" / "hf").glob("iter_*/model*.safetensors"))
    assert "SSD result" in first_point and "decode-only" in first_point and "SSD result" in second_point

    summary_out = ssd("sweep-summary", str(runs))
    assert summary_out.returncode == 0, summary_out.stderr[-3000:]
    assert (runs / "sweep_summary.md").is_file() and (runs / "sweep_top_p0.95.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((runs / "sweep_summary.json").read_text())
    assert summary["points"] == 2 and summary["missing"] == {}
    assert sorted((c["t_train"], c["t_eval"]) for c in summary["cells"]) == [(1.1, 0.7), (1.5, 0.7)]
    for cell in summary["cells"]:
        p1 = cell["pass_at_k"]["1"]
        assert p1["ci_low"] <= p1["estimate"] <= p1["ci_high"] and cell["decode_only"]["1"]["estimate"] is not None
    if "0.95" in summary["ties"]:  # four problems at a 135M model often tie (both points at 0%): no best, stated
        assert summary["best"] == {} and summary["ties"]["0.95"]["cells"] == 2
    else:
        assert summary["best"]["0.95"]["run_dir"] in {str(p) for p in points.values()}

    again = ssd_run(run_dir, "sample.temperature=1.1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("nothing to do") == 8 and "SSD result" in again.stderr
    assert "VLLM" not in again.stderr and "torch.distributed.run" not in again.stderr


def test_decode_only_arm_skips_training(tmp_path):
    out = ssd_run(tmp_path / "run", "arm=decode_only", "eval.n=1", "eval.k=[1]")
    assert out.returncode == 0, out.stderr[-3000:]
    assert not (tmp_path / "run" / "train").exists()
    assert (tmp_path / "run" / "eval" / "base_T1.2" / "summary.json").exists()
    assert "SSD result" in out.stderr
    # no SSD model, no mechanism probe: the report says how to run it
    assert not (tmp_path / "run" / "eval" / "mechanism.json").exists()
    assert "not run (eval.mechanism.enabled is off, or there is no SSD model" in \
        (tmp_path / "run" / "report" / "report.md").read_text()
