"""The mechanism probe: does SSD sharpen *locks* and keep *forks*, beyond what a temperature change of the base does?

The paper explains SSD by a precision-exploration conflict: code interleaves lock positions (one right continuation
and a low-probability distractor tail) and fork positions (several plausible continuations), and one global
temperature must compromise; SSD is said to cut the tails at locks while keeping the forks' diversity. This package
measures that on a base/tuned pair, teacher-forced over the same completions (docs/MECHANISM.md):

- `distributions`: next-token distributions per position, kept as the top-K log-probabilities plus the exact (or
  bounded) entropy and remaining mass: what both extraction paths produce
- `quantities`: position classes from the base distribution (lock / fork / other), tail mass, entropy, plausible
  continuations, and the decoding distribution at a temperature with the training truncation (top-k, top-p, min-p)
- `frontier`: per-problem values, the temperature frontier (the base at a grid of temperatures), SSD's point,
  the tail excess at matched fork entropy with a paired bootstrap over problems, and the one-line reading
- `extract`: the distributions themselves: exactly over the full vocabulary with transformers (small models), or
  with vLLM `prompt_logprobs` (top-K; scales like the rest of the pipeline)
- `probe`: eval samples -> both models' distributions -> eval/mechanism.json, with the split-halves null check
- `calibration`: simulated pairs with a known answer (null, temperature change, lock sharpening) for the tests
"""
