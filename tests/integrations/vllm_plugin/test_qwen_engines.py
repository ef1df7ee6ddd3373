"""The plug-in inside vLLM (vLLM profile): prompt lengths, kept tokens equal to adatp's in
transformers (the committed fixture, tests/fixtures/vllm_kept.json), vLLM's own EVS beside it, and
refusals. One engine per checkpoint, shared by the tests of that checkpoint; skipped without vLLM.
"""

from __future__ import annotations

import pytest

pytest.importorskip("vllm")

from adatp.errors import ConfigError  # noqa: E402
from adatp.integrations.vllm.selection import offered_methods  # noqa: E402

from .engine import FIXTURE, build_checkpoint, free, greedy, make_llm, video_request  # noqa: E402
from .kept_fixture import RATE, retained_count  # noqa: E402

NAMES = sorted(FIXTURE["records"])


@pytest.fixture(scope="module", params=NAMES)
def engine(request, tmp_path_factory):
    """(name, LLM) with the plug-in, video_pruning_rate=RATE and FastVID chosen at start."""
    name = request.param
    path = build_checkpoint(name, tmp_path_factory.mktemp(name) / "model")
    llm = make_llm(path, video_pruning_rate=RATE, hf_overrides={"adatp_method": "fastvid"})
    yield name, llm
    free(llm)


def _set(llm, spec):
    llm.apply_model(lambda model: model.set_adatp_method(spec))


def _kept(llm):
    (kept,) = llm.apply_model(lambda model: None if model.adatp_last is None else model.adatp_last.kept.tolist())
    return kept


def _check_prompt(llm, name, request, prompt_ids) -> None:
    """The prompt holds exactly the planned video tokens, and every other token it had before.

    Qwen2.5-VL's video is one run of pads; Qwen3-VL adds per frame a timestamp and a
    <|vision_start|> ... <|vision_end|> pair around each frame's pads (the pads are what is pruned).
    """
    rec = FIXTURE["records"][name]
    tok = llm.get_tokenizer()
    pad, start = tok.convert_tokens_to_ids("<|video_pad|>"), tok.convert_tokens_to_ids("<|vision_start|>")
    text = tok.encode(request["prompt"], add_special_tokens=False)
    assert prompt_ids.count(pad) == rec["budget"]
    if name.startswith("qwen3"):
        assert prompt_ids.count(start) == text.count(start) + rec["grid"][0]  # one run per frame
    else:
        assert len(prompt_ids) == len(text) - 1 + rec["budget"]


def test_the_count_is_vllms_rule():
    from vllm.multimodal.video_prune.evs import compute_retained_tokens_count

    for c, t, q in [(16, 8, 0.75), (16, 8, 0.5), (196, 16, 0.9), (49, 3, 0.999), (16, 8, 0.0)]:
        assert retained_count(c, t, q) == compute_retained_tokens_count(c, t, q)


def test_prompt_has_the_planned_length(engine):
    name, llm = engine
    rec = FIXTURE["records"][name]
    request = video_request(name, uuid=f"{name}-length")
    out = llm.generate(request, greedy())[0]
    _check_prompt(llm, name, request, list(out.prompt_token_ids))
    assert rec["budget"] == retained_count(rec["grid"][1] * rec["grid"][2], rec["grid"][0], RATE) < 128
    assert len(out.outputs[0].token_ids) > 0


@pytest.mark.parametrize("spec", offered_methods())
def test_kept_tokens_equal_adatp_in_transformers(engine, spec):
    name, llm = engine
    _set(llm, spec)
    llm.generate(video_request(name, uuid=f"{name}-{spec}"), greedy(2))
    assert _kept(llm) == FIXTURE["records"][name]["kept"][spec]


def test_vllms_own_evs_still_runs_on_the_cpu(engine):
    """No adatp method: vLLM's EVS prunes (this crashes on the CPU runner without the plug-in's flag)."""
    name, llm = engine
    _set(llm, None)
    request = video_request(name, uuid=f"{name}-evs")
    out = llm.generate(request, greedy())[0]
    assert _kept(llm) is None  # adatp did not choose
    _check_prompt(llm, name, request, list(out.prompt_token_ids))


@pytest.mark.parametrize("spec", ["adatp", "flashvid", "uniform-frames", "fastvid:bogus=1", "nope"])
def test_refused_methods_say_why_in_one_line(engine, spec):
    _, llm = engine
    with pytest.raises(ConfigError) as err:
        _set(llm, spec)
    assert "\n" not in str(err.value) and spec.split(":")[0] in str(err.value)
