"""Decisions drawn from evaluation results.

- `verdict`: the precondition verdict (is there headroom for SSD on this model and eval set?)
- `collapse`: the anti-collapse battery (trained vs base model on the same probe prompts)
- `gate`: the round-2 gate (did round 1 clearly help without collapsing?)
"""
