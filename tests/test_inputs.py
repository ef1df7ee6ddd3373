"""prepare_inputs: prompt, video token count, pixel tensor, and every error it names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from adatp.errors import ConfigError, InputError, UnsupportedModelError, VideoError
from adatp.inputs import build_prompt, load_chat_template, num_video_tokens, prepare_inputs
from adatp.models.tokenizer import LLAVA_ONEVISION_CHAT_TEMPLATE
from adatp.relevance import extract_query_text

QUESTION = "What happens after the dog jumps?"
EXPECTED_PROMPT = f"<|im_start|>user\n<video>\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
TOKENS_PER_FRAME = 16  # 112 px / 14 px = 8 patches a side, pooled to 4 x 4


def frames(t: int = 4, h: int = 72, w: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint that a test may break."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


# --- the prompt ------------------------------------------------------------------------------


def test_prompt_is_the_llava_onevision_string(tiny_model_dir):
    assert build_prompt(tiny_model_dir, QUESTION) == EXPECTED_PROMPT
    with_system = build_prompt(tiny_model_dir, QUESTION, system_prompt="You are a helpful assistant.")
    assert with_system == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + EXPECTED_PROMPT


@pytest.mark.parametrize("t", [1, 5])
def test_video_tokens_are_one_block_of_t_times_16_plus_1(tiny_model_dir, t):
    inputs = prepare_inputs(tiny_model_dir, frames(t), QUESTION)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    video_id = tok.convert_tokens_to_ids("<video>")
    ids = inputs["input_ids"][0]
    positions = (ids == video_id).nonzero().flatten()
    assert len(positions) == t * TOKENS_PER_FRAME + 1
    assert positions[-1] - positions[0] + 1 == len(positions)  # contiguous
    assert tok.decode(ids) == EXPECTED_PROMPT.replace("<video>", "<video>" * len(positions))
    # the question stays readable after the video, as the relevance scorer reads it
    assert extract_query_text(ids, int(positions[-1]) + 1, tok) == QUESTION


def test_ids_match_id_level_expansion(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    video_id = tok.convert_tokens_to_ids("<video>")
    plain = tok(EXPECTED_PROMPT, add_special_tokens=False).input_ids
    i = plain.index(video_id)
    expected = plain[:i] + [video_id] * (3 * TOKENS_PER_FRAME + 1) + plain[i + 1 :]
    assert prepare_inputs(tiny_model_dir, frames(3), QUESTION)["input_ids"][0].tolist() == expected


def test_batch_feature_holds_exactly_the_three_model_inputs(tiny_model_dir):
    inputs = prepare_inputs(tiny_model_dir, frames(4, 50, 70), QUESTION)
    assert set(inputs.keys()) == {"input_ids", "attention_mask", "pixel_values_videos"}
    ids, mask, pixels = inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values_videos"]
    assert ids.dtype == torch.long and ids.ndim == 2 and ids.shape[0] == 1
    assert torch.equal(mask, torch.ones_like(ids))
    assert pixels.shape == (1, 4, 3, 112, 112) and pixels.dtype == torch.float32
    assert pixels.min() >= -1.0 - 1e-6 and pixels.max() <= 1.0 + 1e-6  # SigLIP mean/std 0.5


def test_num_video_tokens_follows_the_processor_rule(tiny_model_dir):
    from adatp.models.configs import load_architecture_config

    real = load_architecture_config("llava-onevision-qwen2-7b-ov-hf")  # 384/14 = 27 patches -> 14 x 14 pooled
    assert num_video_tokens(real, 32) == 32 * 196 + 1


def test_torch_frames_give_the_same_inputs(tiny_model_dir):
    video = frames(2)
    a = prepare_inputs(tiny_model_dir, video, QUESTION)
    b = prepare_inputs(tiny_model_dir, torch.from_numpy(video), QUESTION)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_tokenizer_loaded_from_the_directory_works(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    a = prepare_inputs(tok, frames(2), QUESTION)
    assert torch.equal(a["input_ids"], prepare_inputs(tiny_model_dir, frames(2), QUESTION)["input_ids"])


def test_model_forward_and_generate_accept_the_inputs(tiny_model_dir, tiny_model):
    inputs = prepare_inputs(tiny_model_dir, frames(3), QUESTION)
    with torch.no_grad():
        logits = tiny_model(**inputs).logits  # the model's own placeholder-count check runs here
        out = tiny_model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all()
    assert out.shape[1] == inputs["input_ids"].shape[1] + 2


def test_processor_template_files_win_over_the_tokenizer(model_copy):
    (model_copy / "chat_template.jinja").unlink()
    custom = LLAVA_ONEVISION_CHAT_TEMPLATE.replace("'<|im_start|>assistant\n'", "'<|im_start|>assistant\nAnswer:'")
    assert custom != LLAVA_ONEVISION_CHAT_TEMPLATE
    (model_copy / "chat_template.json").write_text(json.dumps({"chat_template": custom}))
    assert load_chat_template(model_copy) == custom
    assert build_prompt(model_copy, QUESTION).endswith("<|im_start|>assistant\nAnswer:")


# --- errors ----------------------------------------------------------------------------------


def test_no_video_is_refused(tiny_model_dir):
    with pytest.raises(InputError, match="without a video"):
        prepare_inputs(tiny_model_dir, None, QUESTION)
    with pytest.raises(VideoError, match="zero frames.*without a video"):
        prepare_inputs(tiny_model_dir, np.zeros((0, 32, 32, 3), np.uint8), QUESTION)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((32, 32, 3), np.uint8), r"shape \(T, H, W, 3\)"),
        (np.zeros((2, 3, 32, 32), np.uint8), "channels first"),
        (np.zeros((2, 32, 32, 4), np.uint8), r"shape \(T, H, W, 3\)"),
        (np.zeros((2, 0, 32, 3), np.uint8), "empty image size"),
        (np.zeros((2, 32, 32, 3), np.float32), "uint8"),
        ([[[[0, 0, 0]]]], "numpy array or torch tensor"),
    ],
)
def test_bad_frames_raise_video_error(tiny_model_dir, bad, match):
    with pytest.raises(VideoError, match=match):
        prepare_inputs(tiny_model_dir, bad, QUESTION)


@pytest.mark.parametrize(
    ("question", "match"),
    [("", "empty"), ("   \n", "empty"), (None, "must be a string"), ("What is in <video>?", "placeholder")],
)
def test_bad_questions_raise_input_error(tiny_model_dir, question, match):
    with pytest.raises(InputError, match=match):
        prepare_inputs(tiny_model_dir, frames(1), question)


def test_placeholder_in_system_prompt_is_refused(tiny_model_dir):
    with pytest.raises(InputError, match="system_prompt"):
        prepare_inputs(tiny_model_dir, frames(1), QUESTION, system_prompt="<image>")


def test_missing_directory_or_config(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        prepare_inputs(tmp_path / "nowhere", frames(1), QUESTION)
    with pytest.raises(ConfigError, match="no config.json"):
        prepare_inputs(tmp_path, frames(1), QUESTION)


def test_directory_without_tokenizer(model_copy):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model_copy / name).unlink()
    with pytest.raises(ConfigError, match="tokenizer"):
        prepare_inputs(model_copy, frames(1), QUESTION)


def test_missing_chat_template(model_copy):
    for name in ("chat_template.jinja", "chat_template.json"):
        (model_copy / name).unlink()
    with pytest.raises(ConfigError, match="no chat template"):
        prepare_inputs(model_copy, frames(1), QUESTION)


def test_tokenizer_not_from_a_directory(tiny_model_dir):
    from adatp.models.tokenizer import build_tiny_tokenizer

    with pytest.raises(ConfigError, match="model directory"):
        prepare_inputs(build_tiny_tokenizer(), frames(1), QUESTION)


def test_tokenizer_and_config_that_disagree(model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    config["video_token_index"] = 7
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="video_token_index"):
        prepare_inputs(model_copy, frames(1), QUESTION)


def test_not_a_llava_onevision_checkpoint(model_copy):
    text_config = json.loads((model_copy / "config.json").read_text())["text_config"]
    (model_copy / "config.json").write_text(json.dumps(text_config))  # a plain Qwen2 config
    with pytest.raises(UnsupportedModelError, match="llava_onevision"):
        prepare_inputs(model_copy, frames(1), QUESTION)


def test_preprocessing_that_does_not_fit_the_vision_tower(model_copy):
    path = model_copy / "video_preprocessor_config.json"
    data = json.loads(path.read_text())
    data["size"] = {"height": 224, "width": 224}
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="does not match config.json"):
        prepare_inputs(model_copy, frames(1), QUESTION)
