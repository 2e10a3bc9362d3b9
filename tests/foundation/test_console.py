"""The quiet console (launch/console.py): a stage's library output (fds 1/2, warnings, logging, child processes)
goes to <run>/logs/<stage>.log; the terminal keeps the rule, the stage's own console lines and its summary line; a
failing stage shows the log's tail and path; verbose=true shows everything live; megatron_ssd's own log records
survive Hydra's logging set-up (they reach the stage's log). Each case runs a stub stage in a fresh interpreter,
because the redirection is of the process's real file descriptors."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from megatron_ssd.launch.console import log_tail

STUB = textwrap.dedent('''
    import logging, os, subprocess, sys, types, warnings
    from dataclasses import replace
    from rich.console import Console
    from megatron_ssd.config import SSDConfig
    from megatron_ssd.launch import runner
    from megatron_ssd.launch.console import attach_to_terminal
    from megatron_ssd.rundir import RunDir
    from megatron_ssd.data import mix  # its module logger exists before Hydra configures logging, as in `ssd run`

    run_dir, mode = sys.argv[1], sys.argv[2]

    def noisy(cfg, ctx):
        print("LIB-PRINT from python")
        os.write(1, b"LIB-FD1 from C code\\n")
        os.write(2, b"LIB-FD2 from C code\\n")
        warnings.warn("LIB-WARNING deprecated thing")
        logging.getLogger("vllm.engine").warning("LIB-LOGGING engine record")
        mix.log.warning("SSD-LOGGING a warning of megatron_ssd's own")
        subprocess.run([sys.executable, "-c", "import sys; print('CHILD-OUT'); print('CHILD-ERR', file=sys.stderr)"],
                       check=True)
        ctx.console.print("STAGE-CONSOLE line")
        if mode == "fail":
            raise RuntimeError("stub stage failed")
        return {"num_samples": 3}

    console = Console(stderr=True, width=200)
    attach_to_terminal(console)
    # what Hydra does next in `ssd run`: the app's hydra.job_logging (hydra_conf/hydra/job_logging/ssd.yaml)
    from hydra import compose, initialize_config_module
    from hydra.core.utils import configure_log
    from megatron_ssd.config.schema import register
    register()
    with initialize_config_module(config_module="megatron_ssd.hydra_conf", version_base="1.3"):
        hydra_cfg = compose(config_name="config", return_hydra_config=True).hydra
    configure_log(hydra_cfg.job_logging, hydra_cfg.verbose)
    runner.STAGES = {"prompts": types.SimpleNamespace(description="noisy stub", load=lambda: types.SimpleNamespace(run=noisy))}
    runner.release_engines = lambda: None
    cfg = replace(SSDConfig(), run_dir=run_dir, verbose=(mode == "verbose"))
    run = RunDir.open(cfg)
    runner.run_stage("prompts", cfg, run, console)
    print("AFTER-STAGE stdout is the terminal again")
''')
LIBRARY_LINES = ("LIB-PRINT", "LIB-FD1", "LIB-FD2", "LIB-WARNING", "LIB-LOGGING", "SSD-LOGGING", "CHILD-OUT",
                 "CHILD-ERR")


def run_stub(tmp_path, mode):
    script = tmp_path / "stub.py"
    script.write_text(STUB)
    run_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, str(script), str(run_dir), mode], capture_output=True, text=True,
                         timeout=120)
    return out, run_dir / "logs" / "prompts.log"


def test_quiet_stage_sends_library_output_to_its_log(tmp_path):
    out, log = run_stub(tmp_path, "quiet")
    assert out.returncode == 0, out.stderr
    terminal = out.stdout + out.stderr
    assert "STAGE-CONSOLE line" in terminal and "prompts: done in" in terminal and "num_samples=3" in terminal
    assert "noisy stub" in terminal  # the stage's rule
    assert not [line for line in LIBRARY_LINES if line in terminal], terminal
    assert "AFTER-STAGE" in out.stdout  # fds restored after the stage
    text = log.read_text()
    assert all(line in text for line in LIBRARY_LINES), text
    assert "STAGE-CONSOLE" not in text


def test_failing_stage_prints_the_tail_of_its_log_and_its_path(tmp_path):
    out, log = run_stub(tmp_path, "fail")
    assert out.returncode != 0
    assert f"last {len(log_tail(log))} lines of {log}" in out.stderr
    assert "CHILD-ERR" in out.stderr and f"its full output is in {log}" in out.stderr
    assert "stub stage failed" in out.stderr  # the exception itself reaches the terminal after the fds are restored


def test_verbose_shows_everything_live(tmp_path):
    out, log = run_stub(tmp_path, "verbose")
    assert out.returncode == 0, out.stderr
    terminal = out.stdout + out.stderr
    assert all(line in terminal for line in LIBRARY_LINES), terminal
    assert not log.exists()


def test_log_tail_keeps_the_last_lines(tmp_path):
    log = tmp_path / "x.log"
    assert log_tail(log) == []
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(log, 30) == [f"line {i}" for i in range(70, 100)]
