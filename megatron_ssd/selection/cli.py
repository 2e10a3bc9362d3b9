"""`ssd select`: keep the scalar's top-1 of N samples and report where it falls behind on grounding.

    ssd select --samples FILE.jsonl --repo PATH [--scorer score|pass_rate] [--json OUT] [--markdown OUT]

Each line of FILE.jsonl is {"id": ..., "text": ..., "score": ...} (`text`: markdown with #/## sections, or a JSON
object of named sections). Prints `selected: <id>` and the gap table; exits 0 whether or not gaps exist (a gap is
information, not an error) and 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.markup import escape

from ..errors import SSDError
from ..rundir import atomic_write_text
from .gaps import DEFAULT_THRESHOLD
from .grounding import GroundingConfig
from .index import build_index
from .plans import diagnose_plans
from .render import log_to_wandb, render_json, render_markdown, render_table
from .samples import load_samples
from .scorers import SCORERS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssd select", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", required=True, help="jsonl file: one {id, text, score} object per line")
    p.add_argument("--repo", required=True, help="directory of the Python codebase the samples talk about")
    p.add_argument("--package", default=None,
                   help="dotted name of --repo itself when it is a namespace package (e.g. megatron.core)")
    p.add_argument("--scorer", default="score", choices=sorted(SCORERS), help="the scalar that picks top-1")
    p.add_argument("--depth", type=int, default=GroundingConfig.impact_depth,
                   help="edges of callers/importers followed for impact coverage")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="grounding-ratio difference that counts as a meaningful gap")
    p.add_argument("--json", dest="json_out", default=None, help="write the full report as JSON here")
    p.add_argument("--markdown", dest="md_out", default=None, help="write the report as markdown here")
    return p


def run(argv: list[str] | None, console: Console) -> None:
    args = build_parser().parse_args(argv)
    samples = load_samples(args.samples)
    config = GroundingConfig(impact_depth=args.depth)
    index = build_index(args.repo, package=args.package)
    report = diagnose_plans(samples, index, scorer=args.scorer, config=config, threshold=args.threshold)
    console.print(f"selected: {report.selected}", highlight=False, markup=False)
    console.print(render_table(report))
    for line in report.disagreements + report.notes:
        console.print(f"- {line}", highlight=False, markup=False)
    if report.unresolved:
        console.print(f"unresolved references ({len(report.unresolved)}):", highlight=False)
        for u in report.unresolved:
            console.print(f"  {u['sample']} / {u['section']}: {u['name']}", highlight=False, markup=False)
    if index.skipped:
        console.print(f"skipped {len(index.skipped)} file(s): "
                      + "; ".join(f"{s.path} ({s.reason})" for s in index.skipped), highlight=False, markup=False)
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(render_json(report), indent=2, sort_keys=True) + "\n")
    if args.md_out:
        atomic_write_text(args.md_out, render_markdown(report))
    log_to_wandb(report)


def main(argv: list[str] | None = None) -> int:
    console = Console(width=max(Console().width, 140))
    try:
        run(argv, console)
    except SSDError as exc:
        Console(stderr=True).print("[bold red]error:[/] " + escape(str(exc)), highlight=False, soft_wrap=True)
        return 2
    except SystemExit as exc:  # argparse: usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
