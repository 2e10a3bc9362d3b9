"""The report's sections, in reading order. The decision axes come first, so the first screen answers "is SSD
worth it here, against what, at what cost, and how do I roll back": the pass@1 change with its CI, per-difficulty
changes, the pass@k change (does diversity survive), the collapse probes, device-hours and accuracy per
device-hour, the Pareto comparison against the declared comparator, the verdict and the rollback line. Everything
else follows: pass@k by arm, the T_eval sweep, generation length, the round-2 gate, the filter, best-of-N by likelihood against grounding, and
notes. A section
whose inputs are missing says "not run"."""
from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from ...rundir import RunDir
from ..decisions.gate import configured_min_lift, evaluate_gate
from ..decisions.ledger import METHOD_STAGES, build_ledger, device_kind, rollback_sentence
from ..scoring import paired_passk, slice_table
from . import plots
from .arms import SWEEP, arm_labels
from .formatting import delta_ci, estimate_with_ci, p_value, pp
from .loading import RunData
from .mechanism import mechanism_section
from .promotion import promotion_section, rollback_pointer
from .rehearsal import rehearsal_section
from .rendering import Doc

SMALL_RUN = 200  # fewer eval problems than this: CIs are wide, say so
# The arm whose recipe the paper calls minimal: SSD on its own raw samples only.
MINIMAL_ARM = "minimal"


def run_arms(data: RunData) -> dict[str, str]:
    """Arm -> eval label for the arms this run evaluated (`arms.arm_labels`)."""
    return arm_labels(data.summaries, data.cfg("sample.temperature"))


def build(data: RunData, metrics: dict[str, Any]) -> Doc:
    """Every section, in reading order; each number shown is also put into `metrics` (metrics.json, wandb)."""
    doc = Doc()
    rehearsal_section(doc, data, metrics)  # first: a rehearsal is not a result
    _overview(doc, data)
    _mix(doc, data, metrics)
    _delta(doc, data, metrics, 1)
    _difficulty(doc, data, metrics)
    _delta(doc, data, metrics, max(_ks(data)), diversity=True)
    _collapse(doc, data, metrics)
    ledger = _ledger(data)
    _cost(doc, ledger, metrics)
    _pareto(doc, data, ledger, metrics)
    _verdict(doc, data, ledger, metrics)
    promotion_section(doc, data, metrics)
    mechanism_section(doc, data, metrics)  # after the decision axes: it explains, it does not decide
    _passk(doc, data, metrics)
    _sweep(doc, data, metrics)
    _lengths(doc, data, metrics)
    _gate(doc, data, metrics)
    _filter(doc, data, metrics)
    _selection(doc, data, metrics)
    _notes(doc, data)
    return doc


def _overview(doc: Doc, data: RunData) -> None:
    doc.h("Run")
    forced = data.training_override
    if forced:  # first thing a reader sees: these SSD numbers are not backed by the precondition verdict
        doc.p(f"**Training was forced past the precondition verdict {forced.get('overrode_verdict')}**, which does "
              f"not allow arm `{forced.get('arm')}` (`force_train=true`; reason: "
              f"{forced.get('force_reason') or 'none given'}).")
    doc.ul([f"run directory: `{data.run_dir}`", f"experiment: `{data.cfg('experiment', '?')}`, arm: "
            f"`{data.cfg('arm', '?')}`, round {data.cfg('round', 1)}", f"model: `{data.cfg('model.name', '?')}`",
            f"training decoding: T={data.cfg('sample.temperature', '?')}, top_k={data.cfg('sample.top_k', '?')}, "
            f"top_p={data.cfg('sample.top_p', '?')}; evaluation decoding: T={data.cfg('eval.temperature', '?')}",
            f"eval labels found: {', '.join(sorted(data.summaries)) or 'none'}",
            f"git revision: `{data.manifest.get('git_revision')}`; report written "
            f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}"])


def _mix(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    """Anchor data mixed into training (pack/meta.json "mix"): stated under the run, before any number."""
    mix = data.mix or {}
    realised = float(mix.get("realised_fraction") or 0.0)
    if realised <= 0:
        return
    metrics["mix/realised_fraction"] = realised
    names = ", ".join(f"`{s.get('name')}` {100 * float(s.get('realised_fraction') or 0):.1f}%"
                      for s in mix.get("sources", []))
    text = (f"Anchor data mixed into training: {100 * realised:.1f}% of training tokens (declared "
            f"{100 * float(mix.get('declared_fraction') or 0):.1f}%): {names}.")
    if data.cfg("arm") == MINIMAL_ARM:
        text += (" **Mixing makes this arm no longer the paper's minimal recipe** (SSD on the model's own raw "
                 "samples only).")
    doc.p(text)


def _ks(data: RunData) -> list[int]:
    """The k values the base model was scored at (at least [1])."""
    base = data.summaries.get("base") or {}
    return sorted({int(k) for k in (base.get("pass_at_k") or {})} | {1})


def _comparisons(data: RunData) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, A, B) for every paired comparison B − A the report makes: each arm against the base model, and SSD
    against decode-only (what training adds beyond decoding at the training temperature)."""
    found = run_arms(data)
    out = []
    if "base" in found:
        out += [(f"{arm} − base", data.summaries["base"], data.summaries[found[arm]])
                for arm in ("ssd", "decode-only") if arm in found]
    if "ssd" in found and "decode-only" in found:
        out.append(("ssd − decode-only", data.summaries[found["decode-only"]], data.summaries["ssd"]))
    return out


def _delta(doc: Doc, data: RunData, metrics: dict[str, Any], k: int, *, diversity: bool = False) -> None:
    doc.h(f"pass@{k if k > 1 or not diversity else 'k'}: " +
          ("does diversity survive" if diversity else "change against the base model"))
    comparisons = _comparisons(data)
    if not any(name.endswith("− base") for name, _, _ in comparisons):
        doc.p("not run (needs eval/base and another arm).")
        return
    if diversity and k <= 1:
        doc.p("not run (only pass@1 is estimable: n = 1 sample per problem).")
        return
    rows, method, level = [], None, None
    for name, a, b in comparisons:
        try:
            d = paired_passk(a, b, k)
        except Exception as exc:  # e.g. no common problems: say so instead of failing the report
            rows.append([name, "—", "—", "—", f"not comparable ({exc})"])
            continue
        method, level = d.get("ci_method"), d.get("ci_level")
        key = name.removesuffix(" − base") if name.endswith(" − base") else name.replace(" − ", "_vs_")
        metrics[f"{key}/delta_pass@{k}_pp"] = 100 * d["delta"]
        rows.append([name, pp(d["delta"], signed=True), delta_ci(d), p_value(d.get("p_value")),
                     str(d["num_problems"])])
    doc.table(["comparison", f"Δ pass@{k} (pp)", "CI (pp)", "p (paired)", "problems"], rows)
    if method:
        doc.p(f"Paired over the same problems; {100 * level:g}% CI: {method}. The interval is for the population of "
              "similar problems, not only this benchmark.")


def _difficulty(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Per-difficulty change")
    base = data.summaries.get("base")
    if base is None or "ssd" not in data.summaries:
        doc.p("not run (needs eval/base and eval/ssd).")
        return
    if not base.get("difficulty_of"):
        doc.p("no difficulty labels in the base summary.")
        return
    try:
        table = slice_table(base, data.summaries["ssd"], 1)
    except Exception as exc:  # an old base summary: the message says how to fix it
        doc.p(f"not shown: {exc}")
        return
    doc.p(f"Slices: {table['note']}")
    rows, bars = [], []
    for r in table["slices"]:
        metrics[f"difficulty/{r['label']}/delta_pass@1_pp"] = 100 * r["delta"]
        rows.append([r["label"], str(r["num_problems"]), pp(r["delta"], signed=True), delta_ci(r),
                     p_value(r.get("p_holm")), "yes" if r.get("significant") else "no"])
        if r["ci_low"] is not None:
            bars.append({"label": r["label"], "delta_pp": 100 * r["delta"], "ci_low_pp": 100 * r["ci_low"],
                         "ci_high_pp": 100 * r["ci_high"]})
    doc.table(["difficulty", "problems", "Δ pass@1 SSD − base (pp)", "CI (pp)", "p (Holm)", "significant"], rows)
    doc.p(f"Family-wise correction: Holm over the {len(rows)} slices; significant = Holm-adjusted p below "
          f"{1 - table['ci_level']:.2g}. A slice under {table['min_problems_for_ci']} problems gets no interval or "
          "test (—).")
    doc.img("difficulty_deltas", plots.difficulty_deltas(bars), "per-difficulty deltas")


def _collapse(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Anti-collapse battery")
    c = data.collapse
    if c is None:
        doc.p("not run (no eval/ssd/collapse.json and no generation texts to compute it from).")
        return
    alerts = c.get("alerts", [])
    metrics["collapse/alerts"] = len(alerts)
    doc.p("**all probes in tolerance**" if not alerts else f"**{len(alerts)} alert(s)**")
    doc.ul([f"ALERT {a['probe']}: {a['message']}" for a in alerts])
    probes = c.get("probes") or {}
    rows = []
    for name, pr in probes.items():
        measured = pr.get("method") != "point estimate"
        ci = f"[{_num(pr.get('ci_low'))}, {_num(pr.get('ci_high'))}]" if measured else "—"
        rows.append([name, _num(pr.get("base")), _num(pr.get("model")), _num(pr.get("change")), ci,
                     _num(pr.get("tolerance")), "ALARM" if pr.get("alarm") else "ok"])
    doc.table(["probe", "base", "ssd", "change", "CI", "tolerance", "alarm"], rows)
    if rows:
        doc.p(f"Intervals: {c.get('method', '?')} at {100 * float(c.get('ci_level', 0.95)):g}%; a probe alarms only "
              "when its whole interval lies beyond the tolerance (— : point estimate only, older stats).")
        return
    keys = [k for k in ("self_bleu", "self_bleu_within_prompt", "repetition_4gram", "length_median", "length_p95",
                        "comment_line_rate", "docstring_rate", "refusal_rate", "empty_rate") if k in c.get("base", {})]
    doc.table(["probe", "base", "ssd"], [[k, _num(c["base"].get(k)), _num(c["model"].get(k))] for k in keys])


def _num(x: Any) -> str:
    if isinstance(x, dict):
        return ", ".join(f"{k} {_num(v)}" for k, v in x.items())
    return f"{x:.4g}" if isinstance(x, (int, float)) and math.isfinite(x) else "—"


def _ledger(data: RunData) -> dict[str, Any] | None:
    """`decisions.ledger.build_ledger` for this run; None (with a note) when it cannot be built."""
    try:
        return build_ledger(arm=data.cfg("arm", MINIMAL_ARM), config=data.config, stages=data.stages,
                            summaries=data.summaries, labels=run_arms(data),
                            device=device_kind(data.stages, data.manifest.get("packages")),
                            comparator=data.comparator)
    except Exception as exc:  # a broken optional input must not sink the report
        data.problems_notes.append(f"the ledger could not be built ({type(exc).__name__}: {exc}).")
        return None


def _cost(doc: Doc, ledger: dict[str, Any] | None, metrics: dict[str, Any]) -> None:
    doc.h("Device-hours and accuracy per device-hour")
    if ledger is None or not ledger["stages"]:
        doc.p("no finished stages recorded." if ledger is not None else "not available (see Notes).")
        return
    unit = ledger["unit"]
    rows = []
    for stage, c in ledger["stages"].items():
        metrics[f"compute/{stage}_hours"] = c["device_hours"]
        rows.append([stage, f"{c['seconds']:.1f}", str(c["devices"] if c["devices"] is not None else "?"),
                     f"{c['device_hours']:.4f}", c["source"]])
    doc.table(["stage", "wall seconds", "devices", unit, "source"], rows)
    lines = []
    for name, a in ledger["arms"].items():
        metrics[f"ledger/{name}/method_hours"] = a["method_hours"]
        unrecorded = [s for s in a["missing"] if s in METHOD_STAGES]
        missing = f" (stages not recorded yet: {', '.join(unrecorded)})" if unrecorded else ""
        g = a.get("gain_per_hour")
        if g is None:
            lines.append(f"{name}: {a['method_hours']:.4f} {unit} to make its model{missing}.")
            continue
        gain = (f"pass@1 {g['gain_pp']:+.1f} pp [{g['gain_ci_pp'][0]:+.1f}, {g['gain_ci_pp'][1]:+.1f}] "
                f"({100 * g['ci_level']:g}% CI, {g['num_problems']} problems)")
        if g["pp_per_hour"] is None:
            rate = f"pp per {unit[:-1]} not shown: {g['suppressed']}"
        else:
            metrics[f"ledger/{name}/pp_per_hour"] = g["pp_per_hour"]
            lo, hi = g["pp_per_hour_ci"]
            rate = f"{g['pp_per_hour']:+.3g} pp per {unit[:-1]} [{lo:+.3g}, {hi:+.3g}]"
        lines.append(f"{name}: {gain} for {a['method_hours']:.4f} {unit} of method stages{missing}; {rate}.")
    doc.ul(lines)
    doc.p(f"{unit} = measured wall time × devices the stage holds (`decisions/ledger.py`); an arm's method cost is "
          "what making its model costs beyond the base model (sample, filter, pack, train, export).")


def _pareto(doc: Doc, data: RunData, ledger: dict[str, Any] | None, metrics: dict[str, Any]) -> None:
    doc.h("Pareto comparison")
    if ledger is None:
        doc.p("not available (see Notes).")
        return
    k, unit = ledger["k"], ledger["unit"]
    est = lambda x: "—" if x is None else pp(x)  # noqa: E731
    hours = lambda x: "—" if x is None else f"{x:.4g}"  # noqa: E731
    doc.table(["option", "pass@1 (%)", f"pass@{k} (%)", "device-hours", "on the pass@1 frontier",
               f"on the pass@{k} frontier"],
              [[r["name"], est(r.get("pass_at_1")), est(r.get("pass_at_k")), f"{hours(r.get('device_hours'))} "
                f"{r.get('unit', '')}", "yes" if r["frontier_pass1"] else "no",
                "yes" if r["frontier_passk"] else "no"] for r in ledger["pareto"]])
    kind = data.cfg("decision.comparator.kind")
    if ledger["comparator"] is None:
        doc.p("comparator: decode-only, measured in this run (row above)."
              if kind == "arm" and data.cfg("decision.comparator.arm") == "decode_only"
              else "comparator: not declared (decision.comparator).")
    b = ledger["budget"]
    if b["budget"] is None:
        doc.p(f"budget: not declared (decision.budget_device_hours); spent {b['spent']:.4f} {unit}.")
    else:
        metrics["ledger/within_budget"] = int(bool(b["within"]))
        # the report stage itself is never done while the report is written: not a gap in the ledger
        unrecorded = [s for s in (ledger["arms"].get("ssd") or {}).get("missing", []) if s != "report"]
        gap = f" (stages not recorded: {', '.join(unrecorded)})" if unrecorded else ""
        doc.p(f"budget: spent {b['spent']:.4f} of {b['budget']:g} {unit}: **"
              f"{'within budget' if b['within'] else 'OVER budget'}**{gap}.")
    if b.get("paragraph"):
        doc.p(b["paragraph"])


def _verdict(doc: Doc, data: RunData, ledger: dict[str, Any] | None, metrics: dict[str, Any]) -> None:
    doc.h("Precondition verdict and rollback")
    v = data.verdict
    if not v:
        doc.p("not run (no diagnose/verdict.json).")
    else:
        metrics["verdict"] = v.get("verdict")
        doc.p(f"**{v.get('verdict')}**{' (provisional)' if v.get('provisional') else ''} — {v.get('reason', '')}")
        h = v.get("headroom")
        facts = []
        if h:
            conf = float(v.get("confidence") or h.get("confidence") or 0.95)
            facts.append(f"headroom at the declared k* = {v.get('headroom_k', h.get('k'))}: pass@k* − pass@1 = "
                         f"{h['gap_pp']:.1f} pp, one-sided {100 * conf:g}% bounds [{h['lower_pp']:.1f}, "
                         f"{h['upper_pp']:.1f}] pp")
            metrics["verdict/headroom_pp"] = h["gap_pp"]
        elif "headroom_k" in v:
            facts.append(f"headroom at the declared k* = {v['headroom_k']}: not measured")
        if v.get("provisional"):
            facts.append(f"provisional: fewer than {SMALL_RUN} problems ({v.get('num_problems', '?')})")
        to_decide = v.get("to_decide")
        if to_decide:
            facts.append(f"to decide: about {to_decide.get('problems', '?')} problems at n = {to_decide.get('n')}"
                         if to_decide.get("problems") is not None else "to decide: no sample size would (the "
                         "estimate sits on the threshold)")
        doc.ul(facts)
        if v.get("alternative"):
            doc.p(f"Suggested alternative: {v['alternative']}.")
        gaps = v.get("gaps") or {}
        doc.table(["k", "pass@k − pass@1 (pp)", "CI (pp)"],
                  [[k, f"{g['gap_pp']:.1f}", f"[{g['ci_low_pp']:.1f}, {g['ci_high_pp']:.1f}]"]
                   for k, g in gaps.items()])
        doc.ul([f"weakness: {w}" for w in v.get("weaknesses", [])])
    rollback = (ledger or {}).get("rollback") or {"base_checkpoint": data.cfg("decision.rollback.base_checkpoint"),
                                                 "restore": data.cfg("decision.rollback.restore")}
    doc.p(rollback_sentence(rollback, data.run_dir) + " " + rollback_pointer(data.run_dir))


def _passk(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("pass@k by arm")
    found = run_arms(data)
    for arm in ("base", "decode-only", "ssd"):
        if arm not in found:
            doc.p(f"{arm}: not run." if arm != "decode-only" else
                  f"decode-only: not run (no `base_T{data.cfg('sample.temperature', '?')}` evaluation at the "
                  "declared training temperature).")
    if not found:
        return
    ks = sorted({int(k) for lbl in found.values() for k in (data.summaries[lbl].get("pass_at_k") or {})})
    rows, methods = [], set()
    for arm, lbl in found.items():
        s = data.summaries[lbl]
        pk = s.get("pass_at_k") or {}
        rows.append([f"{arm} (`{lbl}`)", str(s.get("num_problems", "?")), str(s.get("n_min", "?"))] +
                    [estimate_with_ci(pk.get(str(k)), percent_sign=True, missing="—") for k in ks])
        methods |= {b["ci_method"] for b in pk.values() if b.get("ci_method")}
        for k in ks:
            if str(k) in pk:
                metrics[f"{arm}/pass@{k}"] = pk[str(k)]["estimate"]
    doc.table(["arm", "problems", "n"] + [f"pass@{k}" for k in ks], rows)
    if methods:
        doc.p(f"Intervals over problems: {'; '.join(sorted(methods))}.")
    doc.img("passk_curves", plots.passk_curves({arm: data.summaries[lbl] for arm, lbl in found.items()}),
            "pass@k curves")


def _sweep(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("T_eval sweep")
    series: dict[str, list[tuple[float, float, float, float]]] = {"base": [], "ssd": []}
    eval_t = data.cfg("eval.temperature")
    for lbl, s in data.summaries.items():
        m = SWEEP.match(lbl)
        model, t = (m.group(1), float(m.group(2))) if m else (lbl, s.get("temperature", eval_t))
        if model not in series or t is None or "1" not in (s.get("pass_at_k") or {}):
            continue
        e = s["pass_at_k"]["1"]
        series[model].append((float(t), e["estimate"], e["ci_low"], e["ci_high"]))
        metrics[f"sweep/{model}/T{float(t):g}/pass@1"] = e["estimate"]
    if sum(len(v) for v in series.values()) <= len([v for v in series.values() if v]):
        doc.p("not run (no base_T*/ssd_T* evaluations beyond the main decoding).")
    rows = [[model, f"{t:g}", estimate_with_ci({"estimate": e, "ci_low": lo, "ci_high": hi}, percent_sign=True)]
            for model, pts in series.items() for t, e, lo, hi in sorted(pts)]
    doc.table(["model", "T_eval", "pass@1"], rows)
    doc.img("temperature_sweep", plots.temperature_sweep(series), "T_eval sweep")


def _lengths(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Generation length")
    lengths = {}
    for arm, lbl in run_arms(data).items():
        vals = [int(r["num_tokens"]) for r in data.rows.get(lbl, []) if r.get("num_tokens") is not None]
        if vals:
            lengths[arm] = vals
    if not lengths:
        doc.p("not available (no num_tokens in the results).")
        return
    rows = []
    for arm, vals in lengths.items():
        vals_sorted = sorted(vals)
        med = vals_sorted[len(vals) // 2]
        p95 = vals_sorted[min(len(vals) - 1, int(0.95 * len(vals)))]
        metrics[f"{arm}/length_median"] = med
        rows.append([arm, str(len(vals)), str(med), str(p95), str(vals_sorted[-1])])
    doc.table(["arm", "samples", "median", "p95", "max"], rows)
    doc.img("length_histograms", plots.length_histograms(lengths), "length histograms")


def _gate(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Round-2 gate")
    if "base" not in data.summaries or "ssd" not in data.summaries:
        doc.p("not run (needs eval/base and eval/ssd).")
        return
    try:
        g = evaluate_gate(data.summaries["base"], data.summaries["ssd"], data.collapse,
                          min_lift_pp=configured_min_lift(RunDir(data.run_dir)))
    except Exception as exc:
        doc.p(f"could not be evaluated ({exc}).")
        return
    metrics["gate/passed"] = int(g["passed"])
    doc.p(f"**{'PASS' if g['passed'] else 'FAIL'}**")
    doc.ul(g["reasons"])


def _filter(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Verifier-aware filter")
    f = data.filter_meta
    if not f:
        doc.p("not run (the minimal arm trains on raw samples).")
        return
    metrics["filter/keep_rate"] = f.get("keep_rate")
    doc.p(f"kept {f.get('kept')} of {f.get('input')} samples ({100 * (f.get('keep_rate') or 0):.1f}%).")
    doc.table(["dropped by", "samples"], [[k, str(v)] for k, v in (f.get("dropped") or {}).items()])


def _selection(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    """eval/<label>/selection.json: does best-of-N by likelihood pick well-grounded code? Observes only."""
    doc.h("Best-of-N by likelihood against grounding")
    if not data.selections:
        doc.p("not run (eval.selection_diagnostic is off, or eval.n = 1).")
        return
    rows, names = [], []
    for label, s in sorted(data.selections.items()):
        diagnosed, missing = int(s.get("problems") or 0), int((s.get("scalar_missing") or {}).get("problems") or 0)
        if not diagnosed:
            rows.append([f"`{label}`", "0", "—", "—", "—", str(missing)])
            continue
        fraction = s.get("top1_less_grounded_fraction")
        metrics[f"selection/{label}/top1_less_grounded_fraction"] = fraction
        passed = s.get("top1_passed")
        rows.append([f"`{label}`", str(diagnosed), f"{s.get('top1_less_grounded')} ({100 * fraction:.0f}%)",
                     str(s.get("top1_with_unresolved")), "—" if passed is None else str(passed), str(missing)])
        top = ", ".join(f"`{u['name']}` ({u['samples']})" for u in (s.get("unresolved_names") or [])[:8])
        if top:
            names.append(f"`{label}`: {top}")
    doc.table(["label", "problems", "top-1 less grounded", "top-1 with unresolved names", "top-1 passed",
               "scalar missing"], rows)
    if names:
        doc.p("Unresolved names most used (samples):")
        doc.ul(names)
    threshold = next(iter(data.selections.values())).get("threshold")
    doc.p(f"Per problem, the sample with the highest mean token log-probability is compared with every sample's "
          f"grounding: its imports and calls that resolve to a builtin, the standard library or the starter code. "
          f"Less grounded = another sample is better grounded on some section by at least {threshold}. "
          "This observes only: pass@k and the verdict do not use it (docs/SELECTION.md). Scalar missing: problems "
          "whose samples were generated without log-probabilities.")


def _notes(doc: Doc, data: RunData) -> None:
    doc.h("Notes")
    notes = []
    sizes = [s.get("num_problems", 0) for s in data.summaries.values()]
    if sizes and min(sizes) < SMALL_RUN:
        notes.append(f"Small run: {min(sizes)} problems. CIs over so few problems are wide; deltas of a few "
                     "pp are not distinguishable from noise unless the paired CI excludes 0.")
    modes = sorted({m for s in data.summaries.values() for m in s.get("isolation", [])})
    if "fallback-rlimits" in modes:
        notes.append("Some evaluations ran WITHOUT bubblewrap (fallback-rlimits isolation).")
    notes += data.problems_notes
    doc.ul(notes or ["none"])
