"""Stop training at a step boundary before the scheduler kills it, so a requeued job resumes instead of restarting.

Two ways to ask, checked by every rank at the end of every step:
  - SIGUSR1 to a rank process (a local `kill -USR1`, or Slurm's `--signal=USR1@<secs>` on the ranks);
  - the file `<run>/train/stop.request`, which slurm/ssd_pipeline.sh writes when the batch shell gets
    `--signal=B:USR1@<secs>`. A file is the channel that crosses srun and torchrun: torchrun starts each rank in
    its own session and dies on a signal it does not handle, so a signal sent to the launcher never reaches the ranks.

The request is max-reduced over all ranks, so every rank stops after the same step; the trainer then saves a
checkpoint (unless it just did), waits for an asynchronous save to land, removes the request file and raises
`Preempted`; the rank entry point exits with `EXIT_PREEMPTED`. Rerunning the train stage resumes from that
checkpoint with the same data order, so the loss curve continues exactly.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import SSDError

STOP_REQUEST = "stop.request"
# EX_TEMPFAIL from sysexits.h: "try again later", distinct from 0 (done), 1 (bug) and 3 (user error).
EXIT_PREEMPTED = 75


class Preempted(SSDError):
    """Training stopped on request after saving a checkpoint; rerunning the train stage resumes from it."""


class PreemptionWatch:
    """Holds a SIGUSR1 handler (restored by `close`) and answers, identically on every rank, whether to stop."""

    def __init__(self, train_dir: str | Path, signum: int = signal.SIGUSR1):
        self.request_file = Path(train_dir) / STOP_REQUEST
        self.signum = signum
        self._signalled = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():  # signal handlers live on the main thread
            self._previous = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self._signalled = True  # acted on at the end of the current step; nothing else is safe inside a handler

    def requested(self) -> bool:
        """True on every rank when any rank got the signal or sees the request file (one scalar all-reduce)."""
        local = self._signalled or self.request_file.exists()
        if not (dist.is_available() and dist.is_initialized()):
            return local
        device = "cuda" if torch.cuda.is_available() else "cpu"
        flag = torch.tensor([1.0 if local else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def preempted(self, iteration: int, total: int, checkpoint: Path | None) -> Preempted:
        """The exception to raise once the checkpoint is on disk; consumes the request."""
        self.request_file.unlink(missing_ok=True)
        return Preempted(f"training stopped on request (SIGUSR1 or {self.request_file}) after iteration {iteration} "
                         f"of {total}; checkpoint {checkpoint} is saved. Rerun the train stage (a requeued Slurm job "
                         "does) to resume from it.")

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None
