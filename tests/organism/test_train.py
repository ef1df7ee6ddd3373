"""adatp-tiny's training pieces on a tiny random model: the LoRA merge that assembly performs equals
the LoRA-wrapped model it was trained as, and the stage-1 text prompt carries the question."""

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

from adatp.errors import ConfigError
from adatp.organism.build import apply_trained_weights
from adatp.organism.train import TrainConfig, add_lora, describe_events, text_inputs


def test_merged_lora_equals_the_wrapped_model(tiny_model_dir, tmp_path):
    wrapped = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    lora = add_lora(wrapped, rank=4, alpha=8.0, seed=0)
    g = torch.Generator().manual_seed(1)
    tensors = {}
    for name, module in lora.items():
        with torch.no_grad():
            module.B.copy_(torch.randn(module.B.shape, generator=g) * 0.05)
        tensors[f"lora.{name}.A"] = module.A.detach().clone()
        tensors[f"lora.{name}.B"] = (module.B.detach() * module.scale).contiguous()
    save_file(tensors, tmp_path / "w.safetensors")
    merged = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    plain = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    assert apply_trained_weights(merged, tmp_path / "w.safetensors") == {}
    ids = torch.randint(0, 100, (1, 12), generator=g)
    with torch.no_grad():
        want, got, before = (m(input_ids=ids).logits for m in (wrapped, merged, plain))
    assert (want - got).abs().max() <= 1e-4
    assert (want - before).abs().max() > 1e-2  # the LoRA does change the model


def test_unknown_tensor_names_are_refused(tiny_model_dir, tmp_path):
    save_file({"lora.model.nowhere.weight.A": torch.zeros(2, 2), "lora.model.nowhere.weight.B": torch.zeros(2, 2)},
              tmp_path / "w.safetensors")
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_dir)
    with pytest.raises(ConfigError, match="tensors the model does not"):
        apply_trained_weights(model, tmp_path / "w.safetensors")


def test_text_stage_prompt_holds_the_description_and_the_options(tiny_model_dir):
    from adatp.eval.needle import make_item

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    item = make_item("train", 0)
    text = tokenizer.decode(text_inputs(tokenizer, describe_events(item) + "\n" + item.prompt())["input_ids"][0])
    event = item.events[0]
    assert f"A {event.colour} {event.shape} appeared briefly" in text
    assert "A. " in text and text.rstrip().endswith("assistant")


def test_bad_training_settings():
    with pytest.raises(ConfigError):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError):
        TrainConfig(lora_lr=0)


def test_token_cover_and_covered_tokens_by_hand():
    from adatp.organism.train import covered_tokens, token_cover

    # 4x4 grid of 56 px cells on a 224 px frame; a box over rows 0-1 (fully) and col 1 half + col 2 full.
    cover = token_cover((0, 84, 112, 168), grid=4, frame_size=224)
    assert cover[0].tolist() == [0.0, 0.5, 1.0, 0.0] and cover[1].tolist() == [0.0, 0.5, 1.0, 0.0]
    assert cover[2:].abs().sum() == 0
    marks = covered_tokens(cover, inside=0.6, outside=0.05)
    assert marks[0].tolist() == [0, -1, 1, 0] and marks[3].tolist() == [0, 0, 0, 0]
