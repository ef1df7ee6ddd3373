import pytest
import torch

from adatp.adapters import Qwen2_5_VLAdapter, Qwen2VLAdapter, Qwen3VLAdapter, get_adapter
from adatp.errors import InputError
from tests.families import family_model, make_inputs


@pytest.mark.parametrize("fid, cls", [("qwen2-vl", Qwen2VLAdapter), ("qwen2.5-vl", Qwen2_5_VLAdapter), ("qwen3-vl", Qwen3VLAdapter)])
def test_adapter_locates_grids_as_frames(fid, cls):
    model = family_model(fid)
    adapter = get_adapter(model)
    assert type(adapter) is cls and adapter.global_feature == "token_mean"
    inputs = make_inputs(model, num_frames=8)
    span = adapter.locate_video(inputs["input_ids"], inputs)
    lay = span.layout
    assert (lay.num_frames, lay.grid_h, lay.grid_w) == (4, 4, 4)  # 8 frames -> 4 grids of 8x8 patches merged 2x2
    ids = inputs["input_ids"][0]
    pads = torch.nonzero(ids == model.config.video_token_id).flatten()
    assert torch.equal(span.start + lay.grid_offsets(), pads)
    assert span.end == int(pads[-1]) + 1
    other = span.start + lay.newline_offsets()
    assert not bool((ids[other] == model.config.video_token_id).any())  # Qwen3: timestamps and markers
    assert adapter.vision_dims(span.patch_grid).patches_per_frame == 64
    dims = adapter.decoder_dims()
    t = model.config.text_config
    assert (dims.hidden, dims.num_layers, dims.num_kv_heads) == (t.hidden_size, t.num_hidden_layers, t.num_key_value_heads)


@pytest.mark.parametrize("fid", ["qwen2-vl", "qwen3-vl"])
def test_grid_is_read_from_the_models_own_positions_when_generate_dropped_it(fid):
    model = family_model(fid)
    adapter = get_adapter(model)
    inputs = make_inputs(model, num_frames=6)
    positions, _ = model.model.get_rope_index(
        inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"]
    )
    encoded = type("Enc", (), {"pooler_output": (torch.zeros(48, 1),)})()
    kwargs = {"mm_encoder_outputs": {"video": encoded}, "position_ids": positions}
    span = adapter.locate_video(inputs["input_ids"], kwargs)
    assert (span.layout.num_frames, span.layout.grid_h, span.layout.grid_w) == (3, 4, 4)
    assert Qwen2VLAdapter._grid_from_rows([5, 5, 5, 6, 6, 6] * 2, [5, 6, 7] * 4, 2) == (2, 4, 6)
    with pytest.raises(InputError, match="grids"):
        Qwen2VLAdapter._grid_from_rows([5, 5, 6, 6, 5], [5, 6, 5, 6, 5], 2)


@pytest.mark.parametrize("grid", [(8, 8), (28, 28), (24, 40), (18, 10)])
def test_qwen2_5_vl_vision_windows_are_the_models_own(grid):
    """The windows counted for FLOPs against transformers' own window index (the lengths between
    its cu_window_seqlens) on real-size Qwen2.5-VL window settings (112 px, patch 14, merge 2)."""
    from transformers.vision_utils import get_vision_window_index

    model = family_model("qwen2.5-vl")
    adapter = get_adapter(model)
    v = model.config.vision_config
    _, cu = get_vision_window_index(torch.tensor([[1, *grid]]), spatial_merge_size=2, window_size=112, patch_size=14)
    theirs = [n for n in torch.diff(torch.as_tensor(cu)).tolist() if n > 0]
    with_real_windows = type(v)(**{**v.to_dict(), "window_size": 112, "patch_size": 14, "spatial_merge_size": 2})
    model.config.vision_config, saved = with_real_windows, v
    try:
        dims = adapter.vision_dims(grid)
    finally:
        model.config.vision_config = saved
    assert list(dims.window_patches) == theirs
    assert dims.full_attention_layers == len(v.fullatt_block_indexes) < dims.num_layers
