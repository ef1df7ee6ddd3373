"""The trained scorer a model directory can ship: save/load, cosine relevance, auto-selection."""

import shutil

import pytest
import torch

import adatp
from adatp.errors import ConfigError
from adatp.relevance import build_scorer
from adatp.relevance.trained import TextFrameScorer, has_trained_scorer, load_trained_scorer


def _scorer(tiny_model_dir):
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    vocab = len(AutoTokenizer.from_pretrained(tiny_model_dir))
    return TextFrameScorer(vocab_size=vocab, text_dim=16, feature_dim=32)


@pytest.fixture
def model_dir_with_scorer(tiny_model_dir, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    _scorer(tiny_model_dir).save(target)
    return target


def test_save_load_roundtrip_gives_the_same_embeddings(tiny_model_dir, model_dir_with_scorer):
    original = _scorer(tiny_model_dir)
    original.tokenizer = load_trained_scorer(model_dir_with_scorer).tokenizer
    loaded = load_trained_scorer(model_dir_with_scorer)
    cls = torch.randn(5, 32)
    assert torch.equal(original.embed_frames(cls), loaded.embed_frames(cls))
    assert torch.equal(original.embed_text("what colour is it"), loaded.embed_text("what colour is it"))
    assert loaded.embed_text("what colour is it").shape == (32,)


def test_text_embedding_is_the_mean_of_its_tokens(model_dir_with_scorer):
    scorer = load_trained_scorer(model_dir_with_scorer)
    ids = scorer.tokenizer("red star", add_special_tokens=False)["input_ids"]
    expected = scorer.text_proj(scorer.token_embedding.weight[ids].mean(0))
    assert torch.allclose(scorer.embed_text("red star"), expected, atol=1e-6)


def test_bad_frames_and_missing_files(tiny_model_dir, model_dir_with_scorer):
    scorer = load_trained_scorer(model_dir_with_scorer)
    with pytest.raises(ConfigError, match="class tokens"):
        scorer.embed_frames(torch.randn(4, 10, 32))
    assert not has_trained_scorer(tiny_model_dir)
    with pytest.raises(ConfigError, match="no trained relevance scorer"):
        load_trained_scorer(tiny_model_dir)


def test_build_scorer_picks_the_shipped_scorer_by_default(tiny_model_dir, model_dir_with_scorer):
    assert build_scorer(None, tiny_model_dir) is None  # nothing shipped: uniform
    assert isinstance(build_scorer(None, model_dir_with_scorer), TextFrameScorer)
    assert build_scorer("uniform", model_dir_with_scorer) is None
    assert isinstance(build_scorer(f"model:{model_dir_with_scorer}"), TextFrameScorer)
    with pytest.raises(ConfigError, match="model's directory"):
        build_scorer("model", None)


def test_prune_reports_the_shipped_scorer(model_dir_with_scorer):
    """The tiny model has a SigLIP tower (patch-mean global feature): the scorer reads those means."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from adatp.video.synthetic import make_synthetic_frames

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir_with_scorer).eval()
    inputs = adatp.prepare_inputs(model_dir_with_scorer, make_synthetic_frames(num_frames=8, seed=0), "what colour?")
    with adatp.prune(model, "adatp", retention=0.3) as pruned, torch.no_grad():
        model(**inputs)
    report = pruned.last_report
    assert report.relevance_source == f"model:{model_dir_with_scorer}"
    assert not report.relevance_uniform
    assert len(report.method_info["segment_relevance"]) == len(report.method_info["segments"])
