"""The ``siglip:DIR`` scorer on a tiny random SigLIP saved to disk (text tower + pooling head)."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipModel

import adatp
from adatp.errors import ConfigError, InputError
from adatp.relevance import SiglipRelevance, build_scorer, extract_query_text, frame_relevance
from tests.runtime.conftest import build_tiny, make_inputs

WORDS = ["<pad>", "<unk>", "a", "red", "dog", "jumps", "what", "colour", "is", "the", "ball"]


def _tokenizer():
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", model_max_length=16)


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("siglip")
    cfg = SiglipConfig(
        text_config=dict(vocab_size=len(WORDS), hidden_size=24, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, projection_size=32),
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14, vision_use_head=True),
    )
    torch.manual_seed(0)
    SiglipModel(cfg).save_pretrained(path)
    _tokenizer().save_pretrained(path)
    return path


def test_embeddings_have_the_shared_space_and_shapes(siglip_dir):
    scorer = SiglipRelevance(siglip_dir)
    text = scorer.embed_text("what colour is the ball")
    feats = torch.randn(5, 64, 32)
    frames = scorer.embed_frames(feats)
    assert text.shape == (32,) and frames.shape == (5, 32)


def test_head_is_applied_to_the_vlm_features(siglip_dir):
    scorer = SiglipRelevance(siglip_dir)
    feats = torch.randn(3, 64, 32)
    vm = scorer.model.vision_model
    with torch.no_grad():
        expected = vm.head(vm.post_layernorm(feats))
    torch.testing.assert_close(scorer.embed_frames(feats), expected)
    with pytest.raises(ConfigError, match="32-d"):
        scorer.embed_frames(torch.randn(3, 64, 16))


def test_frame_relevance_is_cosine():
    r = frame_relevance(torch.tensor([1.0, 0.0]), torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    torch.testing.assert_close(r, torch.tensor([1.0, 0.0, 2**-0.5]))
    with pytest.raises(ConfigError, match="one space"):
        frame_relevance(torch.ones(3), torch.ones(2, 4))


def test_scorer_specs():
    assert build_scorer(None) is None and build_scorer("uniform") is None
    with pytest.raises(ConfigError, match="unknown relevance"):
        build_scorer("clip:/x")
    with pytest.raises(ConfigError, match="not found"):
        build_scorer("siglip:/no/such/dir")
    with pytest.raises(ConfigError, match="embed_text"):
        build_scorer(42)


def test_query_text_stops_at_the_first_special_token():
    tok = _tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<end>"]})
    end = tok.convert_tokens_to_ids("<end>")
    ids = torch.tensor([9, 9] + tok("what colour is the ball")["input_ids"] + [end, 3, 4])
    assert extract_query_text(ids, 2, tok) == "what colour is the ball"
    with pytest.raises(InputError, match="no question"):
        extract_query_text(torch.tensor([1, end]), 1, tok)


def test_prune_with_siglip_relevance(siglip_dir):
    model = build_tiny(layers=4)
    inputs = make_inputs(num_frames=8, seed=4)

    class Tok:  # the VLM's tokenizer: ids after the video decode to the question
        all_special_ids = []

        def decode(self, ids, skip_special_tokens=True):
            return "what colour is the ball"

    with adatp.prune(model, "adatp", retention=0.25, relevance=f"siglip:{siglip_dir}", tokenizer=Tok()) as h:
        with torch.no_grad():
            model(**inputs)
        report = h.last_report
    assert report.relevance_source == f"siglip:{siglip_dir}" and not report.relevance_uniform
    assert report.query_text == "what colour is the ball"
    assert len(set(report.method_info["segment_relevance"])) > 1


def test_siglip_head_is_the_segmentation_feature(siglip_dir):
    """D6: with relevance='siglip:DIR', g_t is the SigLIP head's pooled feature, not the patch mean."""
    from adatp.ops.segmentation import segment_frames

    model = build_tiny(layers=4)
    inputs = make_inputs(num_frames=8, seed=4)
    captured = []
    hook = model.model.multi_modal_projector.register_forward_pre_hook(lambda m, a: captured.append(a[0].detach()))
    with torch.no_grad():
        model(**inputs)
    hook.remove()
    feats = captured[-1]  # (T, P, d_v)
    head = SiglipRelevance(siglip_dir).embed_frames(feats)
    mean = feats.float().mean(1)
    sims = [torch.nn.functional.cosine_similarity(g[:-1], g[1:], dim=-1) for g in (head, mean)]
    # a threshold at which the two features give different partitions
    tau = next(
        float(c) + 1e-6 for c in torch.cat(sims).sort().values
        if not torch.equal(segment_frames(head, float(c) + 1e-6, 1), segment_frames(mean, float(c) + 1e-6, 1))
    )
    by_head = segment_frames(head, tau, 1)

    class Tok:
        all_special_ids = []

        def decode(self, ids, skip_special_tokens=True):
            return "what colour is the ball"

    with adatp.prune(model, "adatp", retention=0.25, relevance=f"siglip:{siglip_dir}", tokenizer=Tok(),
                     segment_threshold=tau) as h, torch.no_grad():
        model(**inputs)
    info = h.last_report.method_info
    assert info["segmentation_feature"] == "siglip-head"
    segs = by_head.tolist()
    assert info["segments"] == [(segs.index(j), len(segs) - 1 - segs[::-1].index(j)) for j in sorted(set(segs))]
    with adatp.prune(model, "adatp", retention=0.25, segment_threshold=tau) as h, torch.no_grad():
        model(**inputs)
    assert h.last_report.method_info["segmentation_feature"] == "patch-mean"
