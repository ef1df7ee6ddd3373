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
