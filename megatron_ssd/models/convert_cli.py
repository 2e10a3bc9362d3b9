"""`ssd-convert`: HF folder <-> Megatron dist checkpoint.

    ssd-convert hf-to-megatron SRC_HF DST_CKPT --tp N --pp M [--ep E] [--dtype bfloat16] [--force]
    ssd-convert megatron-to-hf SRC_CKPT DST_HF [--hf-template BASE_HF] [--dtype bfloat16]

SRC_CKPT is a checkpoint root (with a `latest` pointer) or one `iter_XXXXXXX` directory. Without
--hf-template the config/tokenizer saved next to a converted checkpoint (`hf_template/`) are used.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import SSDError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssd-convert", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("hf-to-megatron", help="HF safetensors folder -> Megatron torch_dist checkpoint")
    a.add_argument("src")
    a.add_argument("dst")
    a.add_argument("--tp", type=int, default=1, help="tensor parallel size (fixes vocab padding); default 1")
    a.add_argument("--pp", type=int, default=1, help="pipeline parallel size; default 1")
    a.add_argument("--ep", type=int, default=1, help="expert parallel size (MoE); default 1")
    a.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16; default: the HF config's")
    a.add_argument("--vocab-divisible-by", type=int, default=128, help="pad vocab to a multiple of this x TP")
    a.add_argument("--force", action="store_true", help="overwrite an existing converted checkpoint")
    b = sub.add_parser("megatron-to-hf", help="Megatron checkpoint -> HF safetensors folder")
    b.add_argument("src")
    b.add_argument("dst")
    b.add_argument("--hf-template", default=None, help="base HF folder (config, tokenizer, chat template)")
    b.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16; default: the checkpoint's")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .convert import hf_to_megatron, megatron_to_hf  # torch + megatron load after parsing: --help stays instant

    try:
        if args.command == "hf-to-megatron":
            summary = hf_to_megatron(args.src, args.dst, tp=args.tp, pp=args.pp, ep=args.ep, dtype=args.dtype,
                                     make_vocab_size_divisible_by=args.vocab_divisible_by, overwrite=args.force)
        else:
            summary = megatron_to_hf(args.src, args.dst, hf_template=args.hf_template, dtype=args.dtype)
    except SSDError as exc:
        print(f"ssd-convert: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
