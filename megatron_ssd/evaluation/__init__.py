"""Evaluation: the sandbox that runs model-written code, pass@k statistics, and the decision science.

Library entry points (see each module's docstring for the why):
- `results.score_samples` / `results.summarize`: samples -> per-sample rows -> summary.json (schema in results.py)
- `sandbox.SandboxConfig`, `sandbox.run_jobs`: the isolated executor (bubblewrap, or a loud rlimit fallback)
- `passk.pass_at_k`, `stats.paired_bootstrap`, `stats.difficulty_quartiles`
- `verdict.decide` (precondition), `collapse.run_battery` (anti-collapse probes), `gate.evaluate_gate` (round 2)
- `report.render_report` (report.md / report.html)
"""
