"""The report's Promotion section: from the offline numbers to the SSD checkpoint served beside the base one.

It reads `serve/canary_report.json` (written by `ssd canary-report` from the router's telemetry,
`megatron_ssd/serving/canary.py`) and says how current it is against the telemetry; without one it says how to get
there: `ssd serve` (shadow first), `ssd canary-replay`, `ssd canary-report`, and the one-flip rollback
(docs/SERVING.md).
"""
from __future__ import annotations

from typing import Any

from ...rundir import RunDir
from .formatting import delta_ci, estimate_with_ci, p_value, pp
from .loading import RunData
from .rendering import Doc

SERVING_DOC = "docs/SERVING.md"


def promotion_section(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Promotion: shadow and canary serving")
    run = RunDir(data.run_dir)
    report = run.canary_report(data.problems_notes)
    if not report:
        logged = _lines(run.telemetry_path)
        doc.p(("not summarised yet: the router logged " + f"{logged} call(s); run `ssd canary-report "
               f"run_dir={run.path}`." if logged else "not run.") + " " + how_to(run))
        return
    t = report.get("telemetry") or {}
    logged = _lines(run.telemetry_path)
    stale = f" **The telemetry now holds {logged} records: rerun `ssd canary-report run_dir={run.path}`.**" \
        if logged > int(t.get("records") or 0) else ""
    doc.p(f"{t.get('records', 0)} calls logged from {t.get('first')} to {t.get('last')} (`serve/telemetry.jsonl`; "
          f"summarised {report.get('created')}).{stale} Calls by mode: "
          + ", ".join(f"{m} {n}" for m, n in sorted((report.get("modes") or {}).items())) + ".")
    _checkpoints(doc, report, metrics)
    _canary(doc, report, metrics)
    _pass_rates(doc, report, metrics)
    _shadow(doc, report, metrics)
    _incidents(doc, report)
    doc.p(how_to(run))


def how_to(run: RunDir) -> str:
    """The commands from the report to the comparison on live traffic, and the rollback."""
    return (f"Serve: `ssd serve run_dir={run.path} mode=shadow` (base answers, SSD is logged beside it), then "
            f"`mode=canary share=0.05`; replay the eval set with `ssd canary-replay run_dir={run.path}`; summarise "
            f"with `ssd canary-report run_dir={run.path}`. Roll back in one flip, no restart: "
            f"`ssd serve-mode run_dir={run.path} mode=base` ({SERVING_DOC}).")


def _lines(path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def _checkpoints(doc: Doc, report: dict[str, Any], metrics: dict[str, Any]) -> None:
    rows = []
    for name, c in (report.get("checkpoints") or {}).items():
        if not c.get("answers"):
            rows.append([name, "0", "—", "—", "—", "—", "—", "—"])
            continue
        lat, tok = c.get("latency_s") or {}, c.get("completion_tokens") or {}
        metrics[f"promotion/{name}/latency_p50_s"] = lat.get("p50")
        metrics[f"promotion/{name}/latency_p95_s"] = lat.get("p95")
        for rate in ("empty", "refusal"):
            if c.get(rate):
                metrics[f"promotion/{name}/{rate}_rate"] = c[rate]["estimate"]
        finish = ", ".join(f"{k} {v}" for k, v in sorted((c.get("finish_reasons") or {}).items()))
        rows.append([name, f"{c['answers']} ({c['served']} / {c['shadow']})",
                     f"{lat['p50']:.3f} / {lat['p95']:.3f}" if lat else "—",
                     f"{tok['p50']:.0f} / {tok['p95']:.0f}" if tok else "—",
                     estimate_with_ci(c.get("empty"), percent_sign=True),
                     estimate_with_ci(c.get("refusal"), percent_sign=True, missing="not logged"),
                     finish or "—", _ttft(c)])
    doc.table(["checkpoint", "answers (served / shadow)", "latency p50 / p95 (s)", "completion tokens p50 / p95",
               "empty", "refusal", "finish reasons", "first chunk p50 (s)"], rows)
    doc.p(f"Rates per answer with {100 * float(report.get('ci_level') or 0.95):g}% score intervals; latency "
          "percentiles as observed (they depend on the machine and its load, and shadow answers run beside the "
          "served ones).")


def _ttft(c: dict[str, Any]) -> str:
    t = c.get("ttft_s")
    return f"{t['p50']:.3f}" if t else "—"


def _canary(doc: Doc, report: dict[str, Any], metrics: dict[str, Any]) -> None:
    canary = report.get("canary")
    if not canary:
        return
    rows = []
    for c in canary.get("by_share") or []:
        metrics[f"promotion/canary/share_{c['declared_share']:g}/realised"] = c["realised"]["estimate"]
        rows.append([f"{c['declared_share']:g}", str(c["keys"]), str(c["keys_to_ssd"]),
                     estimate_with_ci(c["realised"], percent_sign=True), str(c["calls"])])
    doc.table(["declared share", "routing keys", "keys to SSD", "realised share of keys", "calls"], rows)


def _pass_rates(doc: Doc, report: dict[str, Any], metrics: dict[str, Any]) -> None:
    p = report.get("pass_rates") or {}
    if p.get("status") != "scored":
        doc.p(f"Pass rate on served traffic: {p.get('status', 'none')} ({p.get('note', '')})")
        return
    offline = p.get("offline_pass@1") or {}
    rows = []
    for name, r in (p.get("by_checkpoint") or {}).items():
        metrics[f"promotion/{name}/served_pass_rate"] = r["estimate"]
        rows.append([name, str(r["problems"]), f"{r['passed']} / {r['answers']}",
                     estimate_with_ci(r, percent_sign=True), estimate_with_ci(offline.get(name), percent_sign=True)])
    doc.table(["checkpoint", "problems", "passed / answers", "pass rate on the endpoint", "offline pass@1 (eval/)"],
              rows)
    d = p.get("paired_ssd_minus_base")
    if d:
        metrics["promotion/ssd_minus_base_pp"] = 100 * d["delta"]
        doc.p(f"SSD − base on the {d['num_problems']} problems both answered: {pp(d['delta'], signed=True)} pp "
              f"{delta_ci(d)} (paired over problems, p {p_value(d.get('p_value'))}).")
    doc.p(f"Answers (served and shadow) tagged with a problem id were run against its tests in the sandbox "
          f"({', '.join(p['isolation'])}; splits: {', '.join(f'{k} {v}' for k, v in sorted(p['splits'].items()))}); "
          "intervals over problems, as the offline evaluation's.")


def _shadow(doc: Doc, report: dict[str, Any], metrics: dict[str, Any]) -> None:
    s = report.get("shadow")
    if not s:
        return
    metrics["promotion/shadow/pairs"] = s["pairs"]
    facts = [f"{s['calls']} shadow call(s), {s['pairs']} with both answers"]
    if s.get("identical_text") is not None:
        facts.append(f"identical text in {s['identical_text']} pair(s)")
    change = s.get("completion_tokens_change")
    if change:
        facts.append(f"completion tokens SSD − base: mean {change['mean']:+.1f}, median {change['median']:+.1f}")
    for why, n in (s.get("shadow_missing") or {}).items():
        facts.append(f"no shadow answer in {n} call(s): {why}")
    doc.p("Shadow pairs (the same request answered by both): " + "; ".join(facts) + ".")
    battery = s.get("battery")
    if battery:
        rows = [[name, _num(pr.get("base")), _num(pr.get("model")), _num(pr.get("change")),
                 f"[{_num(pr.get('ci_low'))}, {_num(pr.get('ci_high'))}]", "ALARM" if pr.get("alarm") else "ok"]
                for name, pr in battery["probes"].items()]
        doc.table(["paired probe", "base", "ssd", "change", "CI", "alarm"], rows)
        doc.ul([f"ALERT {a['probe']}: {a['message']}" for a in battery.get("alerts", [])])
    listed = s.get("listed") or []
    if listed:
        doc.table(["request", "problem", "base tokens / finish / passed", "ssd tokens / finish / passed", "same text"],
                  [[str(r["request_id"])[:24], str(r.get("problem_id") or "—"), _side(r["base"]), _side(r["ssd"]),
                    "—" if r.get("same_text") is None else ("yes" if r["same_text"] else "no")] for r in listed[:10]])
        if len(listed) > 10 or s["pairs"] > len(listed):
            doc.p(f"First 10 of {s['pairs']} pairs; `serve/canary_report.json` lists up to {len(listed)}.")


def _side(side: dict[str, Any]) -> str:
    passed = side.get("passed")
    return (f"{side.get('completion_tokens', '—')} / {side.get('finish_reason', '—')} / "
            f"{'—' if passed is None else ('yes' if passed else 'no')}")


def _incidents(doc: Doc, report: dict[str, Any]) -> None:
    timeline = []
    for m in report.get("mode_changes") or []:
        share = f" (share {m['share']:g})" if m.get("mode") == "canary" and m.get("share") is not None else ""
        timeline.append((str(m.get("time")), f"mode {m.get('mode')}{share} ({m.get('source')}"
                                             f"{': ' + m['reason'] if m.get('reason') else ''})"))
    for d in report.get("upstream_down") or []:
        timeline.append((str(d.get("time")), f"the {d.get('checkpoint')} server went down ({d.get('reason')})"))
    items = [f"{when}: {what}" for when, what in sorted(timeline)]
    f = report.get("fallbacks") or {}
    if f.get("count"):
        items.append(f"{f['count']} call(s) routed to SSD were answered by base: "
                     + "; ".join(f"{why} ({n})" for why, n in f.get("reasons", {}).items()))
    errors = report.get("errors") or {}
    if errors:
        items.append("calls not answered with 200: " + ", ".join(f"HTTP {k}: {v}" for k, v in sorted(errors.items())))
    items += report.get("notes") or []
    if items:
        doc.p("Mode changes and incidents:")
        doc.ul(items)


def _num(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) else "—"


def rollback_pointer(run_dir: Any) -> str:
    """What the report's rollback line adds: with the checkpoints served by `ssd serve`, rolling back is one flip."""
    return (f"Served with `ssd serve`, the rollback is one flip without a restart: `ssd serve-mode run_dir={run_dir} "
            "mode=base` (next section).")
