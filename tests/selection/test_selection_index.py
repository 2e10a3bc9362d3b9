"""The codebase index: entities, import and call graphs on the fixture and on the installed megatron.core."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from selection_fixture import write_repo

from megatron_ssd.errors import SSDError
from megatron_ssd.selection.index import build_index, build_index_from_sources


@pytest.fixture()
def shop(tmp_path):
    return build_index(write_repo(tmp_path / "repo"))


def test_entities_and_kinds(shop):
    kinds = {q: e.kind for q, e in shop.entities.items()}
    assert kinds["shop"] == "module" and kinds["shop.cart"] == "module"
    assert kinds["shop.cart.Cart"] == "class"
    assert kinds["shop.cart.Cart.add"] == "method"
    assert kinds["shop.cart.line_total"] == "function"
    assert kinds["shop.pricing.TAX_RATE"] == "attribute"
    assert kinds["shop.cart.Cart.items"] == "attribute"  # self.items = ... in a method
    assert shop.entities["shop.cart.Cart.add"].file == "shop/cart.py"
    assert shop.entities["shop.cart.Cart.add"].line == 13


def test_import_graph_resolves_relative_and_aliased_imports(shop):
    assert shop.imports["shop.cart"] == {"shop.pricing.apply_tax", "shop.pricing.discount", "shop.inventory"}
    assert shop.imports["shop"] == {"shop.cart.Cart"}
    assert shop.importers("shop.cart") == {"shop.checkout"}
    assert shop.importers("shop.cart.Cart") == {"shop", "shop.checkout"}


def test_call_graph_through_aliases_and_counts_what_it_cannot_know(shop):
    assert shop.calls["shop.cart.line_total"] == {"shop.pricing.apply_tax", "shop.pricing.discount"}  # `disc`
    assert shop.calls["shop.checkout.quote"] == {"shop.cart.line_total"}  # cart_mod.line_total
    assert shop.calls["shop.checkout.checkout"] == {"shop.cart.Cart"}  # basket.add(): a local, not guessed
    assert shop.callers("shop.cart.Cart.__init__") == {"shop.checkout.checkout"}
    assert shop.calls["shop.inventory.load"] == {"json.load", "builtins.open"}
    assert shop.unbound["shop.inventory.load"] == {"restock_all"}
    counts = shop.call_counts
    assert (counts.internal, counts.external, counts.unbound) == (9, 3, 1)
    assert counts.dynamic == 6  # items.append, basket.add, basket.total, STOCK.get x2, STOCK.update


def test_resolve_follows_reexports_and_suffixes(shop):
    assert shop.resolve("shop.Cart") == ("shop.cart.Cart",)  # re-exported by shop/__init__.py
    assert shop.resolve("Cart.total") == ("shop.cart.Cart.total",)
    assert shop.resolve("line_total") == ("shop.cart.line_total",)
    assert shop.resolve("shop.pricing.compute_vat") == ()
    assert shop.resolve_path("shop/cart.py") == ("shop.cart",)
    assert shop.resolve_path("cart.py") == ("shop.cart",)
    assert shop.resolve_path("shop") == ("shop",)


def test_impact_is_transitive_up_to_depth(shop):
    assert shop.impact("shop.pricing.apply_tax", 1) == {"shop.cart.line_total": 1, "shop.cart": 1}
    assert shop.impact("shop.pricing.apply_tax", 2) == {
        "shop.cart.line_total": 1, "shop.cart": 1, "shop.cart.Cart.total": 2, "shop.checkout.quote": 2,
        "shop.checkout": 2}


def test_inheritance_self_and_super_calls():
    ix = build_index_from_sources({"m": (
        "class Base:\n    def run(self):\n        return self.step()\n    def step(self):\n        return 1\n"
        "class Child(Base):\n    def step(self):\n        return super().step() + self.run()\n"
        "    @staticmethod\n    def helper(x):\n        return x.run()\n")})
    assert ix.calls["m.Base.run"] == {"m.Base.step"}
    assert ix.calls["m.Child.step"] == {"builtins.super", "m.Base.step", "m.Base.run"}
    assert "m.Child.helper" not in ix.calls  # x is an argument of a staticmethod: dynamic
    assert ix.resolve("m.Child.run") == ("m.Base.run",)


def test_bad_files_are_skipped_and_named_never_fatal(tmp_path):
    root = write_repo(tmp_path / "repo")
    (root / "shop" / "broken.py").write_text("def oops(:\n    pass\n")
    (root / "shop" / "blob.py").write_bytes(b"\x00\x01binary\x00")
    (root / "shop" / "latin.py").write_bytes(b"# -*- coding: ascii -*-\nx = '\xff'\n")
    os.symlink(root / "shop", root / "shop" / "loop")  # a directory symlink that points at its ancestor
    ix = build_index(root)
    skipped = {s.path: s.reason for s in ix.skipped}
    assert skipped["shop/broken.py"].startswith("does not parse (line 1")
    assert skipped["shop/blob.py"] == "binary file (NUL bytes)"
    assert skipped["shop/latin.py"] == "not decodable as source text"
    assert skipped["shop/loop"] == "symlink loop"
    assert "shop.cart.Cart" in ix.entities and "shop.loop.cart" not in ix.entities


def test_missing_repo_and_repo_without_python(tmp_path):
    with pytest.raises(SSDError, match="does not exist"):
        build_index(tmp_path / "nope")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.md").write_text("# hi\n")
    with pytest.raises(SSDError, match="holds no readable Python files"):
        build_index(tmp_path / "docs")


# ------------------------------------------------------------------------ a real package, facts checked by hand
@pytest.fixture(scope="module")
def mcore():
    spec = importlib.util.find_spec("megatron.core")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("megatron-core is not installed")
    return build_index(Path(list(spec.submodule_search_locations)[0]), package="megatron.core")


def test_megatron_core_index_facts(mcore):
    cfg = "megatron.core.transformer.transformer_config.TransformerConfig"
    assert mcore.entities[cfg].kind == "class"
    assert mcore.entities[cfg].file == "transformer/transformer_config.py"
    assert mcore.entities[f"{cfg}.__post_init__"].kind == "method"
    # `class TransformerConfig(ModelParallelConfig)` with `from ..model_parallel_config import ModelParallelConfig`
    assert mcore.bases[cfg] == ["megatron.core.model_parallel_config.ModelParallelConfig"]
    imports = mcore.imports["megatron.core.transformer.transformer_config"]
    assert "megatron.core.model_parallel_config.ModelParallelConfig" in imports and "torch" in imports
    # tensor_parallel/__init__.py re-exports the layer classes
    assert mcore.resolve("megatron.core.tensor_parallel.ColumnParallelLinear") == (
        "megatron.core.tensor_parallel.layers.ColumnParallelLinear",)
    # layers.py: _initialize_affine_weight_cpu calls get_tensor_model_parallel_world_size (imported by name),
    # and ColumnParallelLinear.__init__ calls _initialize_affine_weight_cpu
    layers = "megatron.core.tensor_parallel.layers"
    assert "megatron.core.parallel_state.get_tensor_model_parallel_world_size" in \
        mcore.calls[f"{layers}._initialize_affine_weight_cpu"]
    assert f"{layers}.ColumnParallelLinear.__init__" in mcore.callers(f"{layers}._initialize_affine_weight_cpu")
    assert mcore.skipped == []
    assert mcore.call_counts.dynamic > 0 and mcore.call_counts.internal > 1000
