import pytest
import torch

from adatp.adapters import LlavaOnevisionAdapter, VideoLayout, get_adapter
from adatp.errors import InputError
from tests.runtime.conftest import VIDEO_ID, build_tiny


def test_hf_layout_one_newline_after_the_video():
    lay = VideoLayout(3, 2, 2, "video_end")
    assert lay.num_visual == 12 and lay.block_length == 13
    assert lay.grid_offsets().tolist() == list(range(12))
    assert lay.newline_offsets().tolist() == [12]


def test_llava_next_layout_newline_after_every_row():
    # LLaVA-Video's own layout: 64 frames x 13 rows x (13 + newline) = 10816 tokens (D9).
    lay = VideoLayout(64, 13, 13, "row")
    assert lay.block_length == 64 * 13 * 14 and lay.num_visual == 64 * 169
    small = VideoLayout(2, 2, 3, "row")
    assert small.grid_offsets().tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14]
    assert small.newline_offsets().tolist() == [3, 7, 11, 15]
    per_frame = VideoLayout(2, 1, 2, "frame")
    assert per_frame.grid_offsets().tolist() == [0, 1, 3, 4] and per_frame.newline_offsets().tolist() == [2, 5]
    with pytest.raises(ValueError):
        VideoLayout(2, 2, 2, "column")


def test_adapter_reads_sizes_from_the_config():
    model = build_tiny(layers=3)
    adapter = get_adapter(model)
    assert isinstance(adapter, LlavaOnevisionAdapter)
    dims = adapter.decoder_dims()
    assert (dims.hidden, dims.num_layers, dims.num_kv_heads, dims.head_dim, dims.intermediate) == (64, 3, 2, 16, 128)
    assert adapter.pooled_grid() == 4  # 112 / 14 = 8 patches -> ceil(8 / 2)
    assert adapter.vision_dims().patches_per_frame == 64


def test_find_video_checks_the_token_count():
    adapter = get_adapter(build_tiny(layers=2))
    ids = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.full((1, 2 * 16 + 1), VIDEO_ID), torch.ones(1, 4, dtype=torch.long)], 1)
    span = adapter.find_video(ids, 2)
    assert (span.start, span.end, span.seq_len) == (3, 36, 40)
    with pytest.raises(InputError, match="video tokens"):
        adapter.find_video(ids, 3)
    split = ids.clone()
    split[0, 10] = 0
    split = torch.cat([split, torch.full((1, 1), VIDEO_ID)], 1)
    with pytest.raises(InputError, match="contiguous"):
        adapter.find_video(split, 2)


def _captured_context(model, inputs):
    """The PrefillContext the runtime builds, caught from a method's plan()."""
    import adatp
    from adatp.methods.adatp import AdaTP

    seen = {}
    original = AdaTP.plan

    def spy(self, ctx):
        seen["ctx"] = ctx
        return original(self, ctx)

    AdaTP.plan = spy
    try:
        with adatp.prune(model, "adatp", retention=0.5), torch.no_grad():
            model(**inputs)
    finally:
        AdaTP.plan = original
    return seen["ctx"]


def test_global_feature_is_the_patch_mean_for_towers_without_cls():
    from tests.runtime.conftest import make_inputs

    model, inputs = build_tiny(), make_inputs(num_frames=4)
    assert get_adapter(model).global_feature == "patch_mean"
    ctx = _captured_context(model, inputs)
    cfg = model.config
    with torch.no_grad():
        out = model.model.vision_tower(inputs["pixel_values_videos"][0], output_hidden_states=True)
    patches = out.hidden_states[cfg.vision_feature_layer]  # "full": every token goes to the projector
    assert torch.allclose(ctx.frame_features, patches.float().mean(1), atol=1e-6)


def _tiny_with_cls_tower():
    """The tiny model with a CLIP tower (a CLS token, then 8x8 patches) and the "default" strategy."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    from tests.runtime.conftest import IMAGE_ID, VOCAB

    cfg = LlavaOnevisionConfig(
        text_config=dict(
            model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=4096,
        ),
        vision_config=dict(
            model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, image_size=112, patch_size=14, projection_dim=32,
        ),
        image_token_index=IMAGE_ID,
        video_token_index=VIDEO_ID,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return LlavaOnevisionForConditionalGeneration(cfg).eval()


def test_global_feature_is_the_cls_token_when_the_strategy_drops_it():
    from tests.runtime.conftest import make_inputs

    model = _tiny_with_cls_tower()
    inputs = make_inputs(num_frames=4)  # 8x8 patches pool to 4x4, as with the SigLIP tiny tower
    adapter = get_adapter(model)
    assert adapter.global_feature == "cls"
    ctx = _captured_context(model, inputs)
    with torch.no_grad():
        out = model.model.vision_tower(inputs["pixel_values_videos"][0], output_hidden_states=True)
    cls = out.hidden_states[-1][:, 0]
    assert ctx.frame_features.shape == (4, 32)
    assert torch.allclose(ctx.frame_features, cls.float(), atol=1e-6)
    assert not torch.allclose(ctx.frame_features, out.hidden_states[-1][:, 1:].float().mean(1), atol=1e-3)


def test_interleaved_layout_puts_text_between_grids():
    lay = VideoLayout(2, 1, 2, "interleaved", frame_starts=(0, 5), length=7)
    assert lay.num_visual == 4 and lay.block_length == 7
    assert lay.grid_offsets().tolist() == [0, 1, 5, 6]
    assert lay.newline_offsets().tolist() == [2, 3, 4]
    with pytest.raises(ValueError):
        VideoLayout(2, 1, 2, "interleaved")
    with pytest.raises(ValueError):
        VideoLayout(2, 1, 2, "interleaved", frame_starts=(0,), length=7)


@pytest.mark.parametrize("with_cls", [False, True], ids=["siglip-full", "cls-default"])
def test_step_by_step_encoding_gives_the_models_own_video_tokens(with_cls):
    """run_tower -> patch_features -> project_and_pool, then the newline (what adatp-tiny's training
    runs) equal the video rows the language model receives in a real forward; cls_features is the
    feature layer's class token."""
    from tests.runtime.conftest import make_inputs

    model = _tiny_with_cls_tower() if with_cls else build_tiny()
    adapter = get_adapter(model)
    inputs = make_inputs(num_frames=4)
    seen = {}

    def keep(module, args, kwargs) -> None:
        seen["embeds"] = kwargs["inputs_embeds"]  # (1, L, D)

    hook = adapter.language_model().register_forward_pre_hook(keep, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs)
            out = adapter.run_tower(inputs["pixel_values_videos"][0])
            tokens = adapter.project_and_pool(adapter.patch_features(out))  # (T, g*g, D)
    finally:
        hook.remove()
    video = seen["embeds"][0, inputs["input_ids"][0] == VIDEO_ID]  # (T*g*g + 1, D)
    g = adapter.pooled_grid()
    assert tokens.shape == (4, g * g, video.shape[-1])
    assert torch.equal(tokens.reshape(-1, video.shape[-1]), video[:-1])
    assert torch.equal(adapter.newline_embedding(), video[-1])
    layer = model.config.vision_feature_layer
    assert torch.equal(adapter.cls_features(out), out.hidden_states[layer][:, 0])
    assert adapter.patch_features(out).shape[1] == out.hidden_states[layer].shape[1] - with_cls
