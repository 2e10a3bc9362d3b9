"""Statistics of benchmark scores: the unbiased pass@k estimator and intervals over problems.

Every interval here estimates a mean over the *population of problems like the benchmark's* (the benchmark is one
draw of problems, each problem's samples one draw from the model), not the score on the fixed benchmark.

- `passk`: pass@k (Chen et al., 2021), which k a run can support, and the headroom pass@k − pass@1
- `intervals`: score-type intervals (Wilson with a design effect; MOVER for paired differences) and their p-values
- `bootstrap`: benchmark means and paired comparisons as summary dicts; the bootstrap for the collapse probes
- `slices`: difficulty slices independent of the compared samples, and the Holm correction of a slice table

decisions/calibration.py checks all of them on simulated benchmarks with known pass rates
(tests/evaluation/test_calibration.py; benchmarks/bench_calibration.py is the larger version).
"""
