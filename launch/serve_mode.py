"""ssd serve-mode run_dir=DIR mode=shadow|canary|base|ssd [share=0.05] [reason='...']

Flip the routing mode of the run's `ssd serve` without restarting its servers: `mode=base` is the rollback (every
call to the base checkpoint), `mode=ssd` the full promotion, `mode=canary share=0.1` sends a tenth of the routing
keys to SSD, `mode=shadow` answers with base and logs SSD beside it. The change applies to every call that starts
after it and is recorded in DIR/serve/events.jsonl with the reason. With no router running, the mode is recorded
for its next start (a router started without mode= resumes the last recorded one).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from rich.console import Console

from megatron_ssd.errors import ConfigError, SSDError
from megatron_ssd.rundir import RunDir
from megatron_ssd.serving.control import set_mode

from .options import parse, wants_help

EXIT_USER_ERROR = 2


@dataclass
class ServeModeOptions:
    run_dir: str = ""
    mode: str = ""
    share: float | None = None
    reason: str = ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv, __doc__):
        return 0
    console = Console(stderr=True)
    try:
        opts = parse(ServeModeOptions, argv, "ssd serve-mode")
        if not opts.run_dir or not opts.mode:
            raise ConfigError("ssd serve-mode: run_dir=... and mode=shadow|canary|base|ssd are required.")
        run = RunDir(opts.run_dir)
        run.config()  # a run directory, not a typo
        result = set_mode(run, opts.mode, opts.share, opts.reason)
    except SSDError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_USER_ERROR
    share = f" (share {result['share']:g})" if result["mode"] == "canary" else ""
    if result["live"]:
        before = result.get("previous") or {}
        console.print(f"mode: [bold]{result['mode']}[/]{share}, was {before.get('mode', '?')}; in effect for every "
                      f"call from now on (recorded in {run.serve_events_path}).")
    else:
        console.print(f"no router is running for {run.path}; mode [bold]{result['mode']}[/]{share} recorded for "
                      f"its next `ssd serve run_dir={run.path}` ({run.serve_events_path}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
