"""Make the working tree importable as installed, for the GPU check (benchmarks/gpu/check.sh puts this folder
and the repository root on PYTHONPATH, so every process it starts - pytest, torchrun ranks - runs this).

setup.py maps the top-level folders kernels/, launch/ and hydra_conf/ to `megatron_ssd.kernels`,
`megatron_ssd.launch` and `megatron_ssd.hydra_conf` (see its MAPPED); an install does that mapping, a bare
PYTHONPATH does not. Adding the repository root to the `megatron_ssd` package's search path does the same
without installing anything.
"""
import os

try:
    import megatron_ssd

    _root = os.path.dirname(os.path.dirname(os.path.abspath(megatron_ssd.__file__)))
    if _root not in megatron_ssd.__path__:
        megatron_ssd.__path__.append(_root)
except ImportError:  # not on PYTHONPATH: nothing to map
    pass
