"""Prompt sources, dedup, contamination check and split (the `prompts` stage)."""
