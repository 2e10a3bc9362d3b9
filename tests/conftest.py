import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Base-model conversions the tests make (of temporary HF folders) are shared within the session, not kept in the
# user's cache (megatron_ssd/models/converted_cache.py).
if "MEGATRON_SSD_CONVERSION_CACHE" not in os.environ:
    os.environ["MEGATRON_SSD_CONVERSION_CACHE"] = tempfile.mkdtemp(prefix="ssd_test_conversions_")
    atexit.register(shutil.rmtree, os.environ["MEGATRON_SSD_CONVERSION_CACHE"], ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
