"""Statistics of benchmark scores: the unbiased pass@k estimator and intervals over problems.

- `passk`: pass@k (Chen et al., 2021) and which k a run can support
- `bootstrap`: resampling problems for CIs, paired comparisons, difficulty slices
"""
