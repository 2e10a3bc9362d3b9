"""`ssd run experiment=<preset> rehearsal=true`: rewrite the composed preset into its CPU rehearsal
(`config/rehearsal.py`) and write the files it names (the tiny model folder, the data fixtures) before the config
is validated; the changes are recorded in the run's manifest by `record`."""
from __future__ import annotations

from omegaconf import DictConfig

from megatron_ssd.config.parallel import ParallelLayout
from megatron_ssd.config.rehearsal import MARK, Assets, Change, rehearse
from megatron_ssd.models.base_model import cache_root
from megatron_ssd.rundir import RunDir

# Config groups: `experiment=...` on the command line chooses a preset; it does not set the key it names.
GROUPS = ("experiment", "model", "parallel", "cluster")


def assets_for(cfg: DictConfig) -> Assets:
    """Shared by every rehearsal on this machine: `<cache>/rehearsal` beside the model cache."""
    return Assets(cache_root(cfg.model).parent / "rehearsal")


def prepare(cfg: DictConfig, override_keys: set[str]) -> list[Change]:
    """With `rehearsal=true`: rewrite `cfg` in place, write the files it now points at, return the changes.
    `override_keys`: the keys set on the command line, which keep their values."""
    if not cfg.get("rehearsal"):
        return []
    import torch  # why: only a rehearsal asks whether the ranks will have GPUs

    assets = assets_for(cfg)
    keep = set(override_keys) - set(GROUPS)
    changes = rehearse(cfg, assets, keep=keep, cuda=torch.cuda.is_available())
    from megatron_ssd.models.tiny import write_rehearsal_model  # why: torch/transformers, only for a rehearsal
    from megatron_ssd.prompts.rehearsal_data import write_rehearsal_data  # why: as above

    tiny = assets.model(str(cfg.model.arch), bool(cfg.model.thinking), int(cfg.model.max_model_len))
    if cfg.model.path == str(tiny):
        write_rehearsal_model(str(cfg.model.arch), bool(cfg.model.thinking), tiny,
                              max_position_embeddings=int(cfg.model.max_model_len))
    if str(assets.rstarcoder) in (cfg.data.path, cfg.data.eval_path) or \
            str(assets.livecodebench) in (cfg.data.path, cfg.data.eval_path):
        write_rehearsal_data(assets.rstarcoder, assets.livecodebench)
    return changes


def record(run: RunDir, cfg, changes: list[Change]) -> None:
    """The rehearsal's changes and scaled layout in manifest.json ("rehearsal"), read by the report."""
    if not changes:
        return
    layout = ParallelLayout.from_config(cfg.parallel)
    run.update_manifest("rehearsal", "note", f"{MARK} - not a result: the preset's chain on a tiny random model")
    run.update_manifest("rehearsal", "layout", {**layout.sharding(), "world": layout.world,
                                                "sequence_parallel": layout.sequence_parallel,
                                                "distributed_optimizer": cfg.parallel.distributed_optimizer})
    run.update_manifest("rehearsal", "changes", [c.as_dict() for c in changes])
