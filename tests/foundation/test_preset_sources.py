"""The paper presets against the settings table of docs/REPRODUCING.md, the one home of every value and its source.

Each preset is composed through Hydra as `ssd run experiment=<preset>` would; every key set in its experiment file,
its model file and its parallel file must have a row, every row's value must equal the composed value, and every
row must name a source (the paper, the reference release, lcb_runner, Megatron-LM, a model card, or "our choice:"
with the reason).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from megatron_ssd.config import register

register()
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "REPRODUCING.md"
CONF = ROOT / "hydra_conf"
BEGIN, END = "<!-- preset-settings:begin -->", "<!-- preset-settings:end -->"
SOURCES = ("paper", "reference release", "lcb_runner", "megatron-lm", "model card", "our choice: ")


def settings_table() -> tuple[list[str], dict[str, tuple[list[str], str]]]:
    """(preset names from the header, {key: (cells, source)}) of the marked table."""
    text = DOC.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, f"{DOC}: the settings table markers are missing"
    lines = [ln.strip() for ln in text.split(BEGIN, 1)[1].split(END, 1)[0].strip().splitlines()]

    def cells(line: str) -> list[str]:
        assert line.startswith("|") and line.endswith("|"), f"{DOC}: not a table row: {line!r}"
        return [c.strip() for c in line[1:-1].split("|")]

    header = cells(lines[0])
    assert header[0] == "key" and header[-1] == "source", header
    presets = [h.strip("`") for h in header[1:-1]]
    rows: dict[str, tuple[list[str], str]] = {}
    for line in lines[2:]:
        row = cells(line)
        assert len(row) == len(header), f"{DOC}: row {line!r} has {len(row)} cells, the header {len(header)}"
        key = row[0].strip("`")
        assert key not in rows, f"{DOC}: key {key} appears twice"
        rows[key] = (row[1:-1], row[-1])
    return presets, rows


PRESETS, ROWS = settings_table()


def compose_preset(preset: str):
    with initialize_config_module(config_module="megatron_ssd.hydra_conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={preset}"])
    return OmegaConf.to_container(cfg, resolve=False)  # paths keep their ${oc.env:...} as written


def lookup(tree: dict, key: str):
    node = tree
    for part in key.split("."):
        assert isinstance(node, dict) and part in node, f"{key}: not a key of the composed config"
        node = node[part]
    return node


def leaf_keys(tree, prefix: str = "") -> list[str]:
    if not isinstance(tree, dict):
        return [prefix]
    return [k for name, sub in tree.items() for k in leaf_keys(sub, f"{prefix}.{name}" if prefix else name)]


def preset_keys(preset: str) -> set[str]:
    """Every key the preset sets: its own file, and the files its defaults list picks from model/ and parallel/."""
    exp = yaml.safe_load((CONF / "experiment" / f"{preset}.yaml").read_text())
    keys = {k for k in leaf_keys({n: v for n, v in exp.items() if n != "defaults"})}
    for entry in exp["defaults"]:
        (group, option), = entry.items()
        group = group.removeprefix("override /")
        if group in ("model", "parallel"):
            picked = yaml.safe_load((CONF / group / f"{option}.yaml").read_text())
            keys |= {f"{group}.{k}" for k in leaf_keys(picked)}
        elif group == "cluster":
            keys.add("cluster.launcher")
    return keys


def test_table_covers_exactly_the_paper_presets():
    on_disk = sorted(p.stem for p in (CONF / "experiment").glob("ssd_*.yaml"))
    assert sorted(PRESETS) == on_disk


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_key_has_a_row(preset):
    missing = sorted(preset_keys(preset) - set(ROWS))
    assert not missing, f"{preset}: keys without a row (value and source) in {DOC}: {missing}"


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_values_equal_the_table(preset):
    cfg = compose_preset(preset)
    column = PRESETS.index(preset)
    wrong = []
    for key, (cells, _source) in ROWS.items():
        expected = yaml.safe_load(cells[column].strip("`"))
        actual = lookup(cfg, key)
        if actual != expected or type(actual) is not type(expected) and not (
                isinstance(actual, float) and isinstance(expected, int)):
            wrong.append(f"{key}: preset {actual!r}, table {expected!r}")
    assert not wrong, f"{preset} disagrees with {DOC}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("key", sorted(ROWS))
def test_every_row_names_its_source(key):
    source = ROWS[key][1]
    assert any(s in source.lower() for s in SOURCES), f"{key}: the source {source!r} names none of {SOURCES}"
    for reason in re.split(r"our choice", source, flags=re.I)[1:]:
        assert re.match(r"(\s+is)?:\s*\S", reason), f"{key}: each 'our choice' needs its reason after a colon"
    assert "not verified" not in source.lower(), f"{key}: the table holds sourced values only"
