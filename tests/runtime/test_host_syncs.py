"""No host synchronisation in adatp code while the decoder layers run (the hot path).

On CPU there is no sync to observe, so the test counts the calls that would force one on a GPU
(``item``, ``tolist``, ``__bool__``, ``__int__``, ``__float__``, ``nonzero``) made from adatp's own
files between the first decoder layer and the end of the forward. Pre-LLM work (locating the
video, segments, budgets) runs once per prompt before that window and may sync.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import adatp

ADATP_DIR = str(Path(adatp.__file__).parent)
SYNCING = ("item", "tolist", "__bool__", "__int__", "__float__", "nonzero")


@pytest.fixture
def sync_counter(monkeypatch):
    calls: list[str] = []
    active = {"on": False}
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, __original=original, __name=name, **kwargs):
            if active["on"]:
                frame = sys._getframe(1)
                if frame.f_code.co_filename.startswith(ADATP_DIR):
                    calls.append(f"{__name} at {Path(frame.f_code.co_filename).name}:{frame.f_lineno}")
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return calls, active


@pytest.mark.parametrize("method, target", [("adatp", {"flops_ratio": 0.3}), ("fastv", {"retention": 0.3})])
def test_no_host_sync_in_adatp_code_inside_the_decoder(tiny_ov, video_inputs, sync_counter, method, target):
    calls, active = sync_counter
    layers = tiny_ov.model.language_model.layers
    with adatp.prune(tiny_ov, method, **target) as handle:
        # Registered after adatp's own hooks: runs once adatp's pre-LLM stage is done.
        windows = []

        def open_window(*_):
            active["on"] = True
            windows.append(1)

        start = layers[0].register_forward_pre_hook(open_window)
        stop = tiny_ov.model.language_model.norm.register_forward_hook(lambda *a: active.update(on=False))
        try:
            with torch.no_grad():
                tiny_ov(**video_inputs)
        finally:
            start.remove()
            stop.remove()
        report = handle.last_report
    assert any(s.layer > 0 and s.kept < 128 for s in report.stages)  # in-LLM stages really ran
    assert windows == [1] and not active["on"]  # the window opened once and closed
    assert calls == []


def test_the_counter_sees_a_sync(sync_counter):
    """The instrument works: adatp code that syncs on purpose is caught."""
    from adatp.ops.segmentation import segment_sizes

    calls, active = sync_counter
    active["on"] = True
    assert segment_sizes(torch.tensor([0, 0, 1])) == [2, 1]
    active["on"] = False
    assert calls and calls[0].startswith("tolist at segmentation.py")
