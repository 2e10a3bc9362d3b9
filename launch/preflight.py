"""`ssd preflight`: what to run on a GPU node before `sbatch`, one table and an exit status.

    ssd preflight experiment=ssd_qwen3_30b_a3b_instruct parallel.nnodes=4 [more overrides] [--strict] [--dry-run]

The config is composed from the same presets and overrides as `ssd run` (Hydra's compose API over
`megatron_ssd.hydra_conf`, the overrides checked by `launch/overrides.py`) and validated by the same
`launch.cli.resolve_config`; an invalid config is one failed row, and the rows that can still be checked are.
Rows (launch/preflight_checks.py): the config, the model folder and tokenizer, the datasets' first rows, the
parallel layout against the model, the software stack against the tested matrix (benchmarks/gpu/README.md), GPU
memory per rank against the estimate (training/memory.py), disk for the checkpoints, and a short NCCL all-reduce
over the allocation (under Slurm; `--dry-run` prints its command instead). With `rehearsal=true` the config is the
preset's CPU rehearsal, rewritten (and its tiny model and data fixtures written) as `ssd run` does, and a first
"rehearsal" row says so.

Exit status: 0 when no row failed ("warn" rows and rows not checked here, e.g. "no CUDA device" on a CPU machine,
do not fail); 1 when a row failed, or, with `--strict`, when a row could not be checked either (what a GPU node
before `sbatch` wants); 2 when the command itself is wrong (an unknown key or preset): nothing was checked.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from rich.console import Console
from rich.table import Table

from megatron_ssd.config.validate import to_object
from megatron_ssd.errors import ConfigError, SSDError
from megatron_ssd.training import environment

from . import preflight_checks as checks
from . import rehearsal
from .cli import EXIT_USER_ERROR, resolve_config
from .overrides import check_overrides, is_override, override_key

STYLE = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]not checked[/]"}


def compose_config(overrides: list[str]):
    """The composed (not yet validated) config of `ssd run <overrides>`."""
    with initialize_config_module(config_module="megatron_ssd.hydra_conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def run_checks(overrides: list[str], *, dry_run: bool = False, env: dict[str, str] | None = None,
               found: dict | None = None) -> list[checks.Row]:
    """Every row for `ssd run <overrides>`. `found` (environment.probe()) and `env` are for tests."""
    composed = compose_config(overrides)
    # rehearsal=true: the same rewrite (and files) as `ssd run`, so the rows are the rehearsal's, and say so
    changes = rehearsal.prepare(composed, {override_key(o) for o in overrides})
    try:
        cfg = resolve_config(composed, overrides)
        rows = [checks.Row("config", "ok", f"experiment {cfg.experiment}, arm {cfg.arm}: composes and validates "
                                           "as `ssd run` would")]
    except ConfigError as exc:
        cfg = to_object(composed)
        rows = [checks.Row("config", "fail", str(exc).replace("\n  - ", " | "))]
    if changes:
        rows.insert(0, checks.Row("rehearsal", "warn", f"REHEARSAL of {cfg.experiment.removesuffix('-rehearsal')}: "
                                  f"{len(changes)} values changed (e.g. {', '.join(c.key for c in changes[:4])}); "
                                  "the rows below check the rehearsal, not the preset"))
    found = environment.probe() if found is None else found
    model, info = checks.model_rows(cfg)
    layout_row, layout = checks.layout_of(cfg, info)
    rows += [*model, *checks.data_rows(cfg), layout_row, *checks.stack_rows(cfg, found),
             checks.memory_row(cfg, info, layout, found), checks.disk_row(cfg, info),
             checks.nccl_row(cfg, found, dry_run=dry_run, env=env)]
    return rows


def exit_status(rows: list[checks.Row], strict: bool) -> int:
    failing = {"fail", "skip"} if strict else {"fail"}
    return 1 if any(r.status in failing for r in rows) else 0


def render(rows: list[checks.Row], strict: bool, console: Console) -> None:
    table = Table(title="ssd preflight", show_lines=False, expand=True)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for r in rows:
        table.add_row(r.check, STYLE[r.status], r.detail)
    console.print(table)
    n = Counter(r.status for r in rows)
    code = exit_status(rows, strict)
    console.print(f"{n['ok']} ok, {n['warn']} warn, {n['fail']} failed, {n['skip']} not checked"
                  f"{' (--strict: not checked fails)' if strict else ''}; exit status {code}.", highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssd preflight", description=__doc__.split("\n\n")[0],
                                     epilog="Exit status: 0 nothing failed, 1 a check failed (--strict: or could not "
                                            "be checked), 2 the command is wrong.")
    parser.add_argument("overrides", nargs="*", help="key=value, as for `ssd run` (e.g. experiment=...)")
    parser.add_argument("--strict", action="store_true", help="rows that cannot be checked here fail too")
    parser.add_argument("--dry-run", action="store_true", help="print the NCCL probe's command instead of running it")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    console = Console()
    bad = [o for o in args.overrides if not is_override(o)]
    try:
        if bad:
            raise ConfigError(f"{' '.join(bad)}: not key=value overrides; write them as for `ssd run`.")
        check_overrides(args.overrides)
        rows = run_checks(args.overrides, dry_run=args.dry_run)
    except (SSDError, HydraException) as exc:
        cause = f" ({str(exc.__cause__).splitlines()[0]})" if exc.__cause__ is not None else ""
        console.print(f"[bold red]error:[/] {exc}{cause}", highlight=False)
        return EXIT_USER_ERROR
    render(rows, args.strict, console)
    return exit_status(rows, args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
