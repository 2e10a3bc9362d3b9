"""The selection diagnostic inside the evaluate pipeline (no engine): sample shards with known log-probabilities ->
`_score_label` -> eval/<label>/selection.json -> the report's section; old shards without the column; the engine
requests log-probabilities only for jobs that ask for them (never the `sample` stage)."""
import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from megatron_ssd.config import SSDConfig
from megatron_ssd.evaluation.scoring import summarize
from megatron_ssd.evaluation.selection_report import mean_logprob, selection_enabled, selection_report
from megatron_ssd.generation.engine import Decoding
from megatron_ssd.generation.evalrun import _score_label
from megatron_ssd.generation.sharded import GenerationJob, generate_jobs
from megatron_ssd.generation.shards import SCHEMA, read_samples, write_shard
from megatron_ssd.problems import Problem
from megatron_ssd.rundir import RunDir
from megatron_ssd.stages import StageContext
from megatron_ssd.stages import report as report_stage

from eval_toys import double_problem

pytestmark = pytest.mark.timeout(300)
DECODING = Decoding(0.7, 20, 0.95, 0.0, 64)


def inc_problem() -> Problem:
    return Problem(problem_id="toy/inc", source="test", question="floor plus one", style="humaneval",
                   starter_code="import math\n\n\ndef g(x):\n    '''Return floor(x) + 1.'''\n", entry_point="g",
                   test_code="def check(candidate):\n    assert candidate(2.5) == 3\n")


# (problem, sample_idx) -> (generated code, cumulative log-probability); every sample has 4 tokens.
SAMPLES = {
    # the likeliest sample calls a function nobody defines; sample 1 is grounded (a builtin) and correct
    ("toy/double", 0): ("```python\ndef f(x):\n    return compute_double(x)\n```", -2.0),
    ("toy/double", 1): ("```python\ndef f(x):\n    return int(2 * x)\n```", -6.0),
    ("toy/double", 2): ("```python\nimport strutils\n\n\ndef f(x):\n    return strutils.twice(x)\n```", -4.0),
    # the likeliest sample is grounded (math.floor); sample 1 imports a standard-library module that does not exist
    ("toy/inc", 0): ("```python\ndef g(x):\n    return math.floor(x) + 1\n```", -1.0),
    ("toy/inc", 1): ("```python\nimport fastmath\n\n\ndef g(x):\n    return fastmath.floor(x) + 1\n```", -3.0),
    ("toy/inc", 2): ("```python\ndef g(x):\n    return int(x // 1) + 1\n```", -5.0),
}


def shard_row(pid, idx, text, cumulative_logprob):
    return {"prompt_id": pid, "sample_idx": idx, "prompt_text": "p", "prompt_token_ids": [1], "text": text,
            "token_ids": [5, 6, 7, 8], "finish_reason": "stop", "num_tokens": 4, "seed": idx, "temperature": 0.7,
            "top_k": 20, "top_p": 0.95, "min_p": 0.0, "cumulative_logprob": cumulative_logprob}


def eval_config(isolation, enabled):
    cfg = SSDConfig()
    cfg.eval.n, cfg.eval.k, cfg.eval.selection_diagnostic = 3, [1, 2], enabled
    cfg.eval.isolation, cfg.eval.workers, cfg.eval.timeout_s, cfg.eval.bootstrap_samples = isolation, 2, 10.0, 200
    return cfg


def score(tmp_path, isolation, enabled=True):
    run = RunDir(tmp_path / "run")
    folder = run.eval_samples_dir("base")
    folder.mkdir(parents=True)
    write_shard(folder, 0, [shard_row(pid, i, text, lp) for (pid, i), (text, lp) in SAMPLES.items()])
    summary = _score_label("base", DECODING, [double_problem(), inc_problem()], cfg=eval_config(isolation, enabled), run=run,
                           model_name="base", console=Console(quiet=True), difficulty_of=None)
    return run, summary


def test_selection_json_keeps_the_likelihood_pick_and_flags_invented_names(tmp_path, sandbox_cfg):
    run, summary = score(tmp_path / "on", sandbox_cfg.isolation)
    sel = run.selection("base")
    assert sel["status"] == "ok" and sel["problems"] == 2 and sel["scalar_missing"]["problems"] == 0
    by_pid = {r["prompt_id"]: r for r in sel["per_problem"]}
    double, inc = by_pid["toy/double"], by_pid["toy/inc"]
    # top-1 by mean token log-probability: -2/4 and -1/4, sample 0 of both problems
    assert double["selected"] == "0" and inc["selected"] == "0"
    assert double["mean_logprob"] == {"0": -0.5, "1": -1.5, "2": -1.0}
    # the pick on toy/double calls an invented function; sample 1 is better grounded on its section `f`
    assert double["less_grounded"] and double["selected_unresolved"] == ["compute_double"]
    assert {(g["section"], g["best_sample"], g["selected"], g["best"]) for g in double["gaps"]} == {
        ("f", "1", "0/1", "1/1")}
    assert any("mean token log-probability picked 0, but 1 is better grounded on section f" in d
               for d in double["disagreements"])
    assert not inc["less_grounded"] and inc["selected_unresolved"] == []
    invented = {(u["sample"], u["name"]) for u in inc["unresolved"]}
    assert ("1", "fastmath") in invented  # the import of a module the standard library does not have
    names = {u["name"]: u for u in sel["unresolved_names"]}
    assert {"compute_double", "strutils", "fastmath"} <= set(names) and names["fastmath"]["problems"] == 1
    assert sel["top1_less_grounded"] == 1 and sel["top1_less_grounded_fraction"] == 0.5
    assert sel["top1_with_unresolved"] == 1
    # passed comes from the sandbox: the likeliest toy/double sample fails (NameError), sample 1 passes
    assert double["passed"] == {"0": False, "1": True, "2": False} and inc["passed"]["0"] is True
    assert sel["top1_passed"] == 1

    # it observes only: the same label scored with the diagnostic off has the same summary and no selection.json
    run_off, summary_off = score(tmp_path / "off", sandbox_cfg.isolation, enabled=False)
    assert run_off.selection("base") is None
    assert summary_off["pass_at_k"] == summary["pass_at_k"] and summary_off["per_problem"] == summary["per_problem"]


def test_old_shards_without_the_column_read_and_say_the_scalar_is_missing(tmp_path):
    old_schema = SCHEMA.remove(SCHEMA.get_field_index("cumulative_logprob"))
    rows = [shard_row(pid, i, text, None) for (pid, i), (text, _) in SAMPLES.items()]
    for r in rows:
        del r["cumulative_logprob"]
    pq.write_table(pa.Table.from_pylist(rows, schema=old_schema), tmp_path / "shard_00000.parquet")
    samples = read_samples(tmp_path)
    assert len(samples) == 6 and all(s["cumulative_logprob"] is None and mean_logprob(s) is None for s in samples)
    sel = selection_report([double_problem(), inc_problem()], samples)
    assert sel["status"] == "scalar-missing" and sel["problems"] == 0 and sel["per_problem"] == []
    assert sel["scalar_missing"] == {"problems": 2, "ids": ["toy/double", "toy/inc"]}
    assert "cumulative_logprob" in sel["note"] and sel["top1_less_grounded_fraction"] is None


def test_a_problem_with_one_sample_missing_its_scalar_is_counted_not_guessed():
    rows = [shard_row(pid, i, text, lp) for (pid, i), (text, lp) in SAMPLES.items()]
    rows[4]["cumulative_logprob"] = None  # toy/inc sample 1
    sel = selection_report([double_problem(), inc_problem()], rows)
    assert sel["problems"] == 1 and sel["scalar_missing"]["ids"] == ["toy/inc"]
    assert [r["prompt_id"] for r in sel["per_problem"]] == ["toy/double"]


def test_enabled_only_with_more_than_one_sample():
    cfg = SSDConfig()
    assert cfg.eval.selection_diagnostic is False and not selection_enabled(cfg.eval)
    cfg.eval.selection_diagnostic, cfg.eval.n = True, 1
    assert not selection_enabled(cfg.eval)
    cfg.eval.n = 2
    assert selection_enabled(cfg.eval)


def fake_summary(ids, n=3):
    probs = [Problem(problem_id=pid, source="t", question="q", style="assert", test_code="assert True")
             for pid in ids]
    rows = [{"prompt_id": pid, "sample_idx": j, "passed": j == 0, "isolation": "bwrap", "outcome": "passed"
             if j == 0 else "failed", "num_tokens": 4} for pid in ids for j in range(n)]
    return summarize(rows, probs, [1, 2], n, 0.95, 200, 0), rows


def report_markdown(run_dir):
    cfg = SSDConfig()
    cfg.cluster.wandb_mode = "disabled"
    report_stage.run(cfg, StageContext(run=RunDir(run_dir), console=Console(quiet=True)))
    return (run_dir / "report" / "report.md").read_text(), json.loads((run_dir / "report" / "metrics.json").read_text())


def test_the_report_shows_the_section(tmp_path):
    run = RunDir(tmp_path / "run")
    summary, rows = fake_summary(["toy/double", "toy/inc"])
    run.write_eval_summary("base", summary)
    run.write_eval_results("base", rows)
    md, _ = report_markdown(run.path)
    assert "## Best-of-N by likelihood against grounding" in md
    assert "not run (eval.selection_diagnostic is off" in md

    samples = [shard_row(pid, i, text, lp) for (pid, i), (text, lp) in SAMPLES.items()]
    run.write_selection("base", selection_report([double_problem(), inc_problem()], samples))
    md, metrics = report_markdown(run.path)
    section = md.split("## Best-of-N by likelihood against grounding", 1)[1].split("\n## ", 1)[0]
    assert "| `base` | 2 | 1 (50%) | 1 |" in section
    assert "`compute_double` (1)" in section and "`fastmath` (1)" in section
    assert "pass@k and the verdict do not use it" in section
    assert metrics["selection/base/top1_less_grounded_fraction"] == 0.5
    # after the decision block and the other sections, before the notes
    assert md.index("Verifier-aware filter") < md.index("Best-of-N by likelihood") < md.index("## Notes")


@dataclass
class Completion:
    text: str
    token_ids: list
    finish_reason: str = "stop"
    cumulative_logprob: float | None = None


class LoggingEngine:
    """Records whether each request asked for log-probabilities and answers with a fixed one when it did."""

    def __init__(self):
        self.options = type("Options", (), {"max_model_len": 128})()
        self.asked = []

    def render(self, messages):
        return messages[-1]["content"], (1, 2, 3)

    def stream(self, requests, max_inflight=4096):
        for req in list(requests):
            self.asked.append(req.logprob)
            yield req, Completion("x", [4, 5], cumulative_logprob=-1.25 if req.logprob else None)


def test_only_jobs_that_ask_get_log_probabilities(tmp_path):
    problems = [Problem(problem_id=f"P{i}", source="t", question=f"q{i}") for i in range(3)]
    plain = GenerationJob("sample", problems, DECODING, 2, 7, tmp_path / "sample", 1, [0])
    scored = GenerationJob("eval base", problems, DECODING, 2, 7, tmp_path / "eval", 1, [0], logprob=True)
    engine = LoggingEngine()
    generate_jobs(engine, [plain, scored], console=Console(quiet=True))
    assert engine.asked == [False] * 6 + [True] * 6
    assert {r["cumulative_logprob"] for r in read_samples(tmp_path / "sample")} == {None}
    assert {r["cumulative_logprob"] for r in read_samples(tmp_path / "eval")} == {-1.25}


def test_the_engine_asks_vllm_for_log_probabilities_only_when_told():
    """logprobs=0 (the sampled token's log-probability and their sum) only for a request that asks; the `sample`
    stage's sampling parameters stay exactly what they were before the column existed."""
    vllm = pytest.importorskip("vllm")
    from megatron_ssd.generation.engine import VLLMEngine

    d = Decoding(1.2, 20, 0.95, 0.0, 256)
    before = vllm.SamplingParams(n=1, temperature=1.2, top_k=20, top_p=0.95, min_p=0.0, max_tokens=256, stop=None,
                                 seed=7)
    assert repr(VLLMEngine.sampling_params(None, d, 7)) == repr(before)
    asked = VLLMEngine.sampling_params(None, d, 7, logprob=True)
    assert asked.logprobs == 0 and asked.seed == 7 and asked.temperature == 1.2
