"""The sandbox that runs model-written code: one isolated process tree per sample.

- `runner`: `SandboxConfig`, `SandboxJob`, `run_jobs` (the executor, many samples in parallel)
- `isolation`: choosing and building the isolation layer (bubblewrap, or the declared rlimits-only fallback)
- `harness`: the in-sandbox harness (stdlib only; runs under the system interpreter, never imports this package)
- `protocol`: decoding the harness's record stream into one `SampleOutcome` per sample
- `jobs`: from a `Problem` and a generation to the `SandboxJob` that tests it
- `compare`: how a program's output is compared with the expected output, outside the sandbox
"""
