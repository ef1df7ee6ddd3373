"""At video_pruning_rate 0 the plug-in changes nothing: greedy ids with it equal vLLM's without it
(``VLLM_PLUGINS=none``), each in a fresh engine process, one after the other (vLLM profile)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from .engine import FIXTURE, build_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def _run(model_dir: Path, name: str, plugins: str | None) -> dict:
    env = dict(os.environ)
    env.pop("VLLM_PLUGINS", None)
    if plugins is not None:
        env["VLLM_PLUGINS"] = plugins
    cmd = [sys.executable, "-m", "tests.integrations.vllm_plugin.greedy_ids", str(model_dir), name, "0"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("name", sorted(FIXTURE["records"]))
def test_rate_zero_equals_vllm_without_the_plugin(name, tmp_path):
    path = build_checkpoint(name, tmp_path / name)
    with_plugin = _run(path, name, None)
    without = _run(path, name, "none")
    assert with_plugin["class"].startswith("AdaTP") and not without["class"].startswith("AdaTP")
    assert with_plugin["prompt"] == without["prompt"]
    assert with_plugin["ids"] == without["ids"] and len(without["ids"]) == 8
