"""The plug-in's selection without vLLM (core profile): method names and refusals, exact counts,
the same tokens as the method's own plan/select, merged values, and no transformers import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from adatp.errors import ConfigError
from adatp.integrations.vllm.selection import offered_methods, parse_vllm_method, select_video_tokens
from adatp.ops.merging import merge_tokens


def _video(t=6, h=3, w=4, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    scenes = torch.randn(2, h * w, d, generator=g)
    x = scenes[[0] * (t // 2) + [1] * (t - t // 2)] + 0.3 * torch.randn(t, h * w, d, generator=g)
    return x.reshape(t * h * w, d)


def test_offered_names():
    assert offered_methods() == ["adatp-prellm", "dycoke", "fastvid", "vidcom2", "visionzip"]
    assert parse_vllm_method("adatp-prellm:alpha=0").options == {"alpha": 0.0}
    assert parse_vllm_method("adatp-prellm").method == "adatp"


@pytest.mark.parametrize("spec,words", [
    ("adatp", "adatp-prellm"), ("fastv", "inside the LLM"), ("holitom", "inside the LLM"),
    ("uniform-frames", "positions"), ("nope", "unknown"), ("fastvid:nope=1", "unknown option"),
    ("fastvid:retention=0.5", "cost target"), ("vidcom2:temperature=x", "not a valid"),
    ("adatp-prellm:dedup_threshold=2", "layer 0's attention"),
])
def test_refusals_are_one_line(spec, words):
    with pytest.raises(ConfigError) as err:
        parse_vllm_method(spec)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("spec", offered_methods())
@pytest.mark.parametrize("budget", [12, 29, 72])
def test_exact_count(spec, budget):
    """Every offered method keeps exactly the count vLLM fixed, ascending (equality with adatp in
    transformers: test_qwen_engines.py in the vLLM profile)."""
    x = _video()
    sel = select_video_tokens(parse_vllm_method(spec), x, (6, 3, 4), budget)
    assert sel.kept.shape == (budget,) and torch.equal(sel.kept, torch.sort(sel.kept).values)
    assert sel.values.shape == (budget, 8)
    assert sel.info["relevance"].startswith("uniform")


def test_budget_rule_holds_for_every_count():
    """The plug-in asks the method for retention B / N; adatp's rule floor(r N + 0.5) gives B back."""
    from adatp.ops.budgets import tokens_for_retention

    for n in range(1, 400):
        for b in range(1, n + 1):
            assert tokens_for_retention(b / n, n) == b


def test_pruning_methods_keep_the_tokens_themselves():
    x = _video()
    sel = select_video_tokens(parse_vllm_method("vidcom2"), x, (6, 3, 4), 20)
    assert torch.equal(sel.values, x[sel.kept])


def test_merging_methods_average_every_channel():
    """FastVID merges: values are the weighted averages over all channels (Qwen3-VL's deepstack
    levels included), while only the first ``feature_dim`` channels choose the tokens."""
    x = _video()
    extra = torch.randn(x.shape[0], 5)
    wide = torch.cat([x, extra], 1)
    narrow = select_video_tokens(parse_vllm_method("fastvid"), x, (6, 3, 4), 20)
    both = select_video_tokens(parse_vllm_method("fastvid"), wide, (6, 3, 4), 20, feature_dim=8)
    assert torch.equal(both.kept, narrow.kept)
    assert torch.allclose(both.values[:, :8], narrow.values)
    assert not torch.allclose(both.values[:, 8:], extra[both.kept])  # merged, not just gathered


def test_bad_shapes_and_budgets():
    x = _video()
    with pytest.raises(ConfigError, match="expected"):
        select_video_tokens(parse_vllm_method("fastvid"), x, (5, 3, 4), 10)
    with pytest.raises(ConfigError, match="cannot keep"):
        select_video_tokens(parse_vllm_method("fastvid"), x, (6, 3, 4), 0)


def test_the_plugin_never_imports_transformers():
    """vLLM's environment has its own transformers: the plug-in, its selection and every method
    must import with transformers blocked (and never load adatp's Hugging Face runtime)."""
    code = textwrap.dedent("""
        import sys
        sys.modules["transformers"] = None  # any import of it raises ImportError
        import adatp.integrations.vllm as plugin
        import adatp.methods
        spec = plugin.parse_vllm_method("fastvid")
        import torch
        plugin.select_video_tokens(spec, torch.randn(48, 8), (3, 4, 4), 12)
        assert "adatp.api" not in sys.modules and "adatp.runtime.pruner" not in sys.modules, sorted(sys.modules)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
