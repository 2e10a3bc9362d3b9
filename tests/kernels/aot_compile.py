"""Compile the fused linear CE kernels for a CUDA target without a GPU and report their resource usage.

Run in a process WITHOUT TRITON_INTERPRET (the kernels must be JIT functions). Uses the ptxas and cuobjdump
that ship in the Triton wheel. Prints one JSON object per kernel variant: registers, spill stack, shared memory.

    python tests/kernels/aot_compile.py [--arch 90]
"""
import argparse
import json
import os
import re
import subprocess
import tempfile
import warnings

import torch
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from megatron_ssd.kernels import linear_ce_triton as tk

_PTR = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32"}
_DOT = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}


def compile_kernel(kernel, tiles, cfg, dtype, has_softcap, arch):
    constexprs = dict(HAS_SOFTCAP=has_softcap, BLOCK_M=tiles.block_m, BLOCK_V=tiles.block_v,
                      BLOCK_K=tiles.block_k, BLOCK_H=tiles.block_h, GROUP_M=cfg.group_m, DOT_DTYPE=_DOT[dtype],
                      PREC="ieee" if dtype == torch.float32 else "tf32")
    signature, constants = {}, {}
    for name in kernel.arg_names:
        if name in constexprs:
            signature[name], constants[name] = "constexpr", constexprs[name]
        elif name in ("h_ptr", "w_ptr"):
            signature[name] = _PTR[dtype]
        elif name == "y_ptr":
            signature[name] = "*i64"
        elif name.endswith("_ptr"):
            signature[name] = "*fp32"
        else:
            signature[name] = "fp32" if name == "softcap" else "i32"
    compiled = triton.compile(ASTSource(kernel, signature, constants), target=GPUTarget("cuda", arch, 32),
                              options=dict(num_warps=tiles.num_warps, num_stages=tiles.num_stages))
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        usage = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    return {"registers": int(re.search(r"REG:(\d+)", usage).group(1)),
            "spill_stack_bytes": int(re.search(r"STACK:(\d+)", usage).group(1)),
            "shared_bytes": compiled.metadata.shared}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", type=int, default=90)
    args = parser.parse_args()
    assert not tk.is_interpreted(), "unset TRITON_INTERPRET: the interpreter cannot compile"
    warnings.filterwarnings("ignore")
    kernels = {"fwd": tk._fwd_kernel, "dh": tk._dh_kernel, "dw": tk._dw_kernel}
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        cfg = tk.GPU_CONFIG_FP32 if dtype == torch.float32 else tk.GPU_CONFIG
        for name, kernel in kernels.items():
            for has_softcap in (False, True):
                row = compile_kernel(kernel, getattr(cfg, name), cfg, dtype, has_softcap, args.arch)
                print(json.dumps({"kernel": name, "dtype": str(dtype), "softcap": has_softcap, **row}), flush=True)


if __name__ == "__main__":
    main()
