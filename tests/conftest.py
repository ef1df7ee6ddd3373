"""Shared fixtures: a tiny random-weight LLaVA-OneVision checkpoint, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import LlavaOnevisionForConditionalGeneration

from adatp.models.tiny import build_tiny_llava_onevision


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete local checkpoint (seed 0, default tiny sizes: 112 px frames -> 16 tokens a frame).

    Session-scoped and shared: do not modify it; copy it (``shutil.copytree``) to alter files.
    """
    return build_tiny_llava_onevision(tmp_path_factory.mktemp("tiny-llava-onevision") / "model", seed=0)


@pytest.fixture
def tiny_model(tiny_model_dir: Path) -> LlavaOnevisionForConditionalGeneration:
    """A fresh copy of the tiny model in eval mode, loaded with ``from_pretrained`` (about 40 ms)."""
    return LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
