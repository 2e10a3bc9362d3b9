import contextlib
import os
import shutil
from pathlib import Path

import pytest

# The fused linear-CE kernel is Triton; on a CPU it runs in Triton's interpreter, which must be chosen before
# Triton is first imported (spawned/torchrun ranks inherit it).
os.environ.setdefault("TRITON_INTERPRET", "1")

import train_helpers as h  # noqa: E402


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    """Built once per session: packed data and the converted tiny models (tied 4 layers, untied 2 layers)."""
    from megatron_ssd.models.convert import hf_to_megatron

    root = tmp_path_factory.mktemp("training_assets")
    for name, layers, tie in (("tied", 4, True), ("untied", 2, False)):
        hf = h.tiny_hf_model(root / f"hf_{name}", layers=layers, tie=tie)
        hf_to_megatron(hf, root / f"base_{name}", tp=1, dtype="float32")
    h.make_packed(root / "pack", num_docs=48, seq_length=h.SEQ, fingerprint=h.fingerprint(root / "hf_tied"))
    return root


@pytest.fixture
def make_run(assets, tmp_path):
    """make_run(name, model="tied") -> a fresh run directory with pack/ and train/base/ in place."""

    def make(name: str = "run", model: str = "tied") -> Path:
        run = tmp_path / name
        shutil.copytree(assets / "pack", run / "pack")
        shutil.copytree(assets / f"base_{model}", run / "train" / "base")
        return run

    return make


@contextlib.contextmanager
def single_rank_trainer(cfg):
    """A Trainer on one rank in this process (file rendezvous); process groups are torn down afterwards."""
    import tempfile

    from megatron_ssd.models.parallel import destroy_process_groups
    from megatron_ssd.training.paths import TrainPaths
    from megatron_ssd.training.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="ssd-rdzv-") as tmp:
        try:
            yield Trainer(cfg, TrainPaths(Path(cfg.run_dir)), init_method=f"file://{tmp}/rdzv")
        finally:
            destroy_process_groups()


@pytest.fixture
def trainer_factory():
    return single_rank_trainer
