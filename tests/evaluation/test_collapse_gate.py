"""Anti-collapse probes and the round-2 gate on constructed inputs (including the gate's console entry)."""
import json
import math
import random

import pytest

from megatron_ssd.evaluation.decisions import gate
from megatron_ssd.evaluation.decisions.collapse import (CollapseThresholds, ngram_repetition, probe_stats, run_battery,
                                              self_bleu, sentence_bleu, tokenize)
from megatron_ssd.evaluation.postfilters import declared_filter, is_looping, is_stub
from megatron_ssd.evaluation.scoring import summarize
from megatron_ssd.problems import Problem


def varied_texts(n=40, seed=0):
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "sum", "sort", "loop", "index", "value", "result", "items", "key"]
    return [f"def f{i}(x):\n    " + " ".join(rng.choice(words) for _ in range(30)) for i in range(n)]


def test_bleu_identity_and_diversity():
    toks = tokenize("def f(x): return x + 1")
    from collections import Counter

    ref = {n: Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)) for n in range(1, 5)}
    assert sentence_bleu(toks, [ref], [len(toks)]) == pytest.approx(1.0)
    same = ["def f(x):\n    return sorted(x, key=len)\n"] * 20
    assert self_bleu(same) == pytest.approx(1.0)
    assert self_bleu(varied_texts()) < 0.5
    assert math.isnan(self_bleu(["only one"]))


def test_repetition():
    assert ngram_repetition(["a b c d e f g h"]) == 0.0
    assert ngram_repetition(["x y z w " * 20]) > 0.9


def test_battery_quiet_when_nothing_changed():
    texts = varied_texts()
    stats = probe_stats(texts, [100] * len(texts), [f"p{i % 10}" for i in range(len(texts))])
    out = run_battery(stats, dict(stats))
    assert out["ok"] and out["alerts"] == []


def test_battery_alerts_with_numbers():
    base_texts = varied_texts()
    base = probe_stats(base_texts, [100] * 40)
    collapsed = probe_stats(["def f(x):\n    return x\n"] * 40, [160] * 40)
    out = run_battery(base, collapsed)
    probes = {a["probe"] for a in out["alerts"]}
    assert {"self_bleu", "length_median", "length_p95"} <= probes and not out["ok"]
    a = next(a for a in out["alerts"] if a["probe"] == "length_median")
    assert a["base"] == 100 and a["model"] == 160 and a["change"] == pytest.approx(0.6) and "+60.0%" in a["message"]
    # a 20% length change is inside the declared 25% tolerance
    assert not any(x["probe"].startswith("length") for x in
                   run_battery(base, probe_stats(base_texts, [120] * 40))["alerts"])
    strict = run_battery(base, probe_stats(base_texts, [120] * 40), thresholds=CollapseThresholds(length_rel=0.1))
    assert any(x["probe"] == "length_median" for x in strict["alerts"])


def test_probe_intervals_over_prompts_and_point_fallback():
    ids = [f"q{i % 10}" for i in range(40)]
    base = probe_stats(varied_texts(), [100] * 40, ids)
    model = probe_stats(varied_texts(seed=1), [100 + i % 7 for i in range(40)], ids)
    out = run_battery(base, model, bootstrap_samples=200, seed=0)
    assert out["ok"] and out["method"] == "paired bootstrap over 10 prompts" and "per_prompt" not in out["base"]
    for name, probe in out["probes"].items():
        assert probe["ci_low"] <= probe["ci_high"] and not probe["alarm"], name
    assert out["bootstrap"] == {"samples": 200, "seed": 0} and out["ci_level"] == 0.95
    # stats from older files (no per-prompt sums): the point estimate, marked as such
    old = {k: v for k, v in base.items() if k != "per_prompt"}
    collapsed = probe_stats(["def f(x):\n    return x\n"] * 40, [160] * 40)
    fallback = run_battery(old, collapsed)
    assert fallback["method"].startswith("point estimate") and not fallback["ok"]
    # with per-prompt sums a collapse this large alarms with its interval in the message
    alert = next(a for a in run_battery(base, collapsed)["alerts"] if a["probe"] == "length_median")
    assert alert["ci_low"] > 0.25 and "CI [" in alert["message"]


def test_style_refusal_and_ood_probes():
    base = probe_stats(['def f(x):\n    """doc"""\n    return x\n'] * 10 + varied_texts(10))
    model = probe_stats(["I'm sorry, I cannot help with that."] * 5 + varied_texts(15, seed=1))
    probes = {a["probe"] for a in run_battery(base, model, ood_base=0.5, ood_model=0.4)["alerts"]}
    assert {"refusal_rate", "docstring_rate", "out_of_domain"} <= probes


def summary(p1_counts, n=8, ids=40):
    rows, probs = [], []
    for i in range(ids):
        pid = f"p{i}"
        c = p1_counts(i)
        probs.append(Problem(problem_id=pid, source="t", question="q", style="assert", test_code="assert True"))
        rows += [{"prompt_id": pid, "sample_idx": j, "passed": j < c, "outcome": "passed" if j < c else "failed",
                  "isolation": "bwrap"} for j in range(n)]
    return summarize(rows, probs, [1, 8], n, 0.95, 500, 0)


def test_passk_drop_while_pass1_rises():
    base = summary(lambda i: 2)  # pass@1 25%, pass@8 100%
    narrowed = summary(lambda i: 8 if i < 16 else 0)  # pass@1 40%, pass@8 40%
    alerts = run_battery({}, {}, base_summary=base, model_summary=narrowed)["alerts"]
    assert [a["probe"] for a in alerts] == ["passk_vs_pass1"]
    assert "narrowing" in alerts[0]["message"]


def test_gate_pass_and_fail_reasons():
    base = summary(lambda i: 2)
    better = summary(lambda i: 4)
    quiet = {"alerts": []}
    ok = gate.evaluate_gate(base, better, quiet, min_lift_pp=5)
    assert ok["passed"] and ok["lift_pp"] == pytest.approx(25.0) and ok["paired"]["ci_low"] > 0
    assert not gate.evaluate_gate(base, better, quiet, min_lift_pp=30)["passed"]
    # one lucky problem out of ten: a 7.5 pp lift that is not distinguishable from noise
    small_base = summary(lambda i: 2, ids=10)
    lucky = summary(lambda i: 8 if i == 0 else 2, ids=10)
    noisy = gate.evaluate_gate(small_base, lucky, quiet, min_lift_pp=5)
    assert noisy["lift_pp"] == pytest.approx(7.5) and noisy["ci_overlap"] and noisy["paired"]["ci_low"] <= 0
    assert not noisy["passed"] and any(r.startswith("FAIL: CIs overlap") for r in noisy["reasons"])
    same = gate.evaluate_gate(base, base, quiet, min_lift_pp=0)
    assert not same["passed"] and any("FAIL: CIs overlap" in r for r in same["reasons"])
    alert = gate.evaluate_gate(base, better, {"alerts": [{"probe": "self_bleu", "message": "self-BLEU +30%"}]})
    assert not alert["passed"] and any("self-BLEU +30%" in r for r in alert["reasons"])
    missing = gate.evaluate_gate(base, better, None)
    assert not missing["passed"] and any("not run" in r for r in missing["reasons"])


def test_gate_console_entry(tmp_path, capsys):
    for label, fn in (("base", lambda i: 2), ("ssd", lambda i: 4)):
        d = tmp_path / "eval" / label
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(summary(fn)))
    (tmp_path / "eval" / "ssd" / "collapse.json").write_text(json.dumps({"alerts": []}))
    assert gate.main([str(tmp_path), "--min-lift-pp", "5"]) == 0
    assert "round-2 gate: PASS" in capsys.readouterr().out
    (tmp_path / "eval" / "ssd" / "collapse.json").unlink()
    assert gate.main([str(tmp_path)]) == 1  # no battery, no texts to compute one from
    assert "FAIL" in capsys.readouterr().out
    assert gate.main([str(tmp_path / "nope")]) == 2


def test_declared_post_filters():
    assert is_stub("") and is_stub("```python\ndef f(x):\n    '''doc'''\n    pass\n```")
    assert is_stub("def f(x):\n    raise NotImplementedError\n")
    assert not is_stub("def f(x):\n    return x\n") and not is_stub("def f(:")
    assert is_looping("def f():\n    return 1\n" + "print(1)\n" * 20)
    assert is_looping("x = (" + "(" * 40)
    assert not is_looping("\n".join(f"    elif x == {i}:\n        return {i * i}" for i in range(30)))
    assert declared_filter({"text": "   "}) == "empty_or_stub"
    assert declared_filter({"text": "def f(x):\n    return x\n", "finish_reason": "length"}) == "truncated"
    assert declared_filter({"text": "def f(x):\n    return x\n" + "x = 1\n" * 30}) == "looping"
    assert declared_filter({"text": "def f(x):\n    return x\n", "finish_reason": "stop"}) is None
    cut = {"text": "def f(x):\n    return x\n" + "x = 1\n" * 30, "finish_reason": "length"}
    assert declared_filter(cut) == "truncated" and declared_filter(cut, enabled=("looping",)) == "looping"
    assert declared_filter(cut, enabled=()) is None


def test_rate_probes_keep_a_width_when_nothing_happens_in_either_arm():
    """No empty output and no refusal in either arm: the bootstrap interval is [0, 0]; the reported one is not."""
    ids = [f"p{i // 2}" for i in range(40)]
    base = probe_stats(varied_texts(40), prompt_ids=ids)
    model = probe_stats(varied_texts(40, seed=3), prompt_ids=ids)
    probes = run_battery(base, model)["probes"]
    for key in ("empty_rate", "refusal_rate"):
        assert probes[key]["ci_low"] < 0 < probes[key]["ci_high"] and not probes[key]["alarm"]
