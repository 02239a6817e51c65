"""Shared fixtures: devices (CUDA variants skip cleanly), the dev-audio folder beside the
project (tests that need it skip where it is absent), and small signal generators."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEV_AUDIO = Path(os.environ.get("HEAR_VEC_DEV_AUDIO", REPO_ROOT.parent / "shared" / "dev_audio"))

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for torch.distributed rendezvous in tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

#: parametrize a test over devices: ``@pytest.mark.parametrize("device", DEVICES)``
DEVICES = ["cpu", pytest.param("cuda", marks=[CUDA, pytest.mark.cuda])]


@pytest.fixture(scope="session")
def dev_audio() -> Path:
    """``../shared/dev_audio`` (speech/ and noise/ of real 16 kHz recordings), or skip."""
    if not (DEV_AUDIO / "speech").is_dir() or not (DEV_AUDIO / "noise").is_dir():
        pytest.skip(f"dev audio not found at {DEV_AUDIO}")
    return DEV_AUDIO


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
