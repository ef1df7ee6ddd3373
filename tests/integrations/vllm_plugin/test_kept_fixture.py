"""Core profile: the committed fixture of what adatp keeps in transformers (tests/fixtures/vllm_kept.json)
is what adatp keeps now, so the vLLM profile's equality test never compares against a stale record."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
from .kept_fixture import NAMES, OUT, record  # noqa: E402

FIXTURE = json.loads(OUT.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", NAMES)
def test_fixture_is_current(name, tmp_path):
    import transformers

    if transformers.__version__ != FIXTURE["versions"]["transformers"]:
        pytest.skip(f"recorded with transformers {FIXTURE['versions']['transformers']} (adatp's runtime)")
    from adatp.models.tiny_vllm import build_tiny_for_vllm

    now = record(build_tiny_for_vllm(name, tmp_path / name), name)
    assert now == FIXTURE["records"][name], "re-record: python -m tests.integrations.vllm_plugin.kept_fixture"
    # The methods disagree with each other: the equality test is not trivially satisfied.
    kept = [tuple(v) for v in now["kept"].values()]
    assert len(set(kept)) >= 4
