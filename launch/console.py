"""The quiet console: the terminal shows `ssd`'s own lines; what libraries print goes to a log file per stage.

vLLM, Megatron, Transformer Engine, torch.distributed and wandb write to file descriptors 1 and 2 directly, from
C++ code and from child processes (engine cores, torchrun ranks, engine workers), so redirecting Python's
`sys.stdout` is not enough: for a stage's duration fds 1 and 2 of this process point at `<run>/logs/<stage>.log`,
and every child started meanwhile inherits them. The rich console keeps a duplicate of the original terminal fd,
so rules, progress bars, summaries and the result panel still reach the user. `verbose=true` (`ssd -v`) leaves the
fds alone and everything shows live.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections import deque
from pathlib import Path
from typing import Iterator, TextIO

from rich.console import Console
from rich.logging import RichHandler

TAIL_LINES = 30


def attach_to_terminal(console: Console) -> TextIO:
    """Point `console` at a private duplicate of the current stderr, which later fd redirections do not move, and
    send log records to whatever fd 2 is at the time: during a quiet stage, its log, like every library line."""
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")
    console.file = terminal
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=Console(stderr=True))])
    return terminal


@contextlib.contextmanager
def stage_output(log_path: Path, *, verbose: bool) -> Iterator[None]:
    """Send fds 1 and 2 (this process and its children) to `log_path`, appending, for the block's duration."""
    if verbose:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log_fd):
            os.close(fd)


def log_tail(log_path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last `lines` lines of a stage's log ([] when it does not exist)."""
    if not log_path.is_file():
        return []
    with open(log_path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in deque(f, maxlen=lines)]


def print_log_tail(console: Console, stage: str, log_path: Path) -> None:
    tail = log_tail(log_path)
    if tail:
        console.rule(f"[red]{stage}: last {len(tail)} lines of {log_path}[/]")
        console.print("\n".join(tail), highlight=False, markup=False)
        console.rule()
    console.print(f"[red]{stage} failed; its full output is in {log_path}[/]")
