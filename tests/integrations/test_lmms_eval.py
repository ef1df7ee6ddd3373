"""The lmms-eval plug-in: ``--model adatp`` through the entry point, the local task ``adatp_mcq``,
lmms-eval's per-item answers equal to ``adatp eval mcq``'s on the same model, items and target, and
the plug-in's answer equal to the harness's on every family (tiny random checkpoints).

Skipped where lmms-eval is not installed (the core profile); it needs ``pip install "adatp[lmms-eval]"``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lmms_eval")

import adatp  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from ..families import FAMILIES  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ITEMS = REPO / "examples" / "mcq" / "needle-test.jsonl"
TASKS = REPO / "adatp" / "integrations" / "lmms_eval_tasks"


def _letter_of(response, count):
    """The task's own utils.py, loaded from its file as lmms-eval loads it."""
    spec = importlib.util.spec_from_file_location("adatp_mcq_utils", TASKS / "adatp_mcq" / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.predicted_letter(response, count)


def test_entry_point_names_the_model():
    from lmms_eval.models import get_model, get_model_manifest

    from adatp.integrations.lmms_eval import AdaTPModel

    assert get_model("adatp") is AdaTPModel
    assert get_model_manifest("adatp").simple_class_path == "adatp.integrations.lmms_eval.AdaTPModel"


@pytest.mark.parametrize("response, count, letter", [
    ("B", 4, "B"), (" C.", 4, "C"), ("(A) red", 3, "A"), ("D", 3, None), ("Blue", 4, None), ("", 2, None),
])
def test_task_reads_the_option_letter(response, count, letter):
    assert _letter_of(response, count) == letter


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """adatp-tiny (the built-in trained model, cached in ~/.cache/adatp); the random tiny
    LLaVA-OneVision when it cannot be had here."""
    try:
        from adatp.organism.build import adatp_tiny_dir

        return adatp_tiny_dir()
    except Exception:  # noqa: BLE001 - not built and not buildable here: any tiny model will do
        from adatp.models.tiny import build_tiny_llava_onevision

        return build_tiny_llava_onevision(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def test_lmms_eval_answers_equal_adatp_eval_mcq(model_dir, tmp_path):
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", ADATP_MCQ_ITEMS=str(ITEMS),
               TOKENIZERS_PARALLELISM="false")
    # adatp's own harness
    mcq = subprocess.run([sys.executable, "-m", "adatp", "eval", "mcq", str(ITEMS), "--model", str(model_dir),
                          "--method", "adatp", "--flops-ratio", ".273", "--frames", "16", "--json",
                          "--out", str(tmp_path / "mcq")], capture_output=True, text=True, timeout=1200, env=env)
    assert mcq.returncode == 0, mcq.stderr[-3000:]
    results_file = json.loads(mcq.stdout)["runs"][0]["results_file"]
    rows = [json.loads(line) for line in Path(results_file).read_text().splitlines()[1:]]
    assert len(rows) == 6
    # lmms-eval, the same model, items, method, target and frames
    out = tmp_path / "lmms"
    lmms = subprocess.run(
        [sys.executable, "-m", "lmms_eval", "--model", "adatp",
         "--model_args", f"pretrained={model_dir},method=adatp,flops_ratio=0.273,max_frames_num=16,device=cpu",
         "--tasks", "adatp_mcq", "--include_path", str(TASKS), "--batch_size", "1",
         "--log_samples", "--output_path", str(out)],
        capture_output=True, text=True, timeout=1200, env=env, cwd=tmp_path)
    assert lmms.returncode == 0, (lmms.stdout + lmms.stderr)[-3000:]
    samples_files = list(out.rglob("*samples_adatp_mcq.jsonl"))
    assert len(samples_files) == 1, (lmms.stdout + lmms.stderr)[-3000:]
    samples = sorted((json.loads(line) for line in samples_files[0].read_text().splitlines()),
                     key=lambda s: s["doc_id"])
    assert len(samples) == len(rows)
    for row, sample in zip(rows, samples):  # docs keep the file's order
        answer = sample["filtered_resps"]
        answer = answer[0] if isinstance(answer, list) else answer
        assert (row["id"], answer) == (row["id"], row["predicted"])
        assert sample["target"] == row["answer"]
        assert sample["acc"] == float(row["correct"])
        counts = sample["token_counts"][0]
        assert counts["adatp_kept_tokens"] == row["kept_final"]
        assert counts["adatp_kept_per_stage"] == row["kept_per_stage"]
        assert counts["adatp_flops_visual_ratio"] == row["flops_visual_ratio"]
        assert counts["adatp_flops_full_ratio"] == row["flops_full_ratio"]
        assert counts["adatp_num_visual"] == row["num_visual"]


def _instance(request_type, arguments):
    from lmms_eval.api.instance import Instance

    return Instance(request_type=request_type, arguments=arguments, idx=0,
                    metadata={"task": "t", "doc_id": arguments[3], "repeats": 1})


@pytest.mark.parametrize("method", ["adatp", "none"])
def test_model_loglikelihood_and_free_generation(model_dir, method):
    """loglikelihood over option letters picks what generate_until's letter rule picks; longer
    continuations are teacher-forced; free greedy text stops at ``until``; method=none keeps all."""
    from adatp.integrations.lmms_eval import AdaTPModel
    from adatp.tasks.jsonl import load_items

    item = load_items(ITEMS)[0]
    doc = {"video": str(item.video), "options": item.options}
    model = AdaTPModel(pretrained=str(model_dir), method=method, flops_ratio=0.273, max_frames_num=4, device="cpu")
    model.task_dict = {"t": {"test": [doc]}}
    visual = lambda d: [d["video"]]  # noqa: E731
    context = item.prompt()
    picked = model.generate_until([_instance("generate_until", (context, {"max_new_tokens": 1, "adatp_options_field": "options"},
                                                                 visual, 0, "t", "test"))])[0]
    letters = "ABCD"[:len(item.options)]
    scores = model.loglikelihood([_instance("loglikelihood", (context, letter, visual, 0, "t", "test")) for letter in letters])
    assert all(isinstance(lp, float) and lp <= 0 for lp, _ in scores)
    assert letters[max(range(len(letters)), key=lambda i: scores[i][0])] == picked.text
    (long_lp, long_greedy), = model.loglikelihood([_instance("loglikelihood", (context, "D. blue", visual, 0, "t", "test"))])
    assert long_lp <= scores[3][0] + 1e-4 and isinstance(long_greedy, bool)  # log P("D. blue") <= log P("D")
    free = model.generate_until([_instance("generate_until", (context, {"max_new_tokens": 3, "until": ["\n"]},
                                                               visual, 0, "t", "test"))])[0]
    counts = free.token_counts.to_dict()
    assert 1 <= counts["output_tokens"] <= 3 and "\n" not in free.text
    assert counts["adatp_method"] == method
    if method == "none":
        assert counts["adatp_kept_tokens"] == counts["adatp_num_visual"] > 0
        assert counts["adatp_flops_visual_ratio"] == 1.0
    else:
        assert counts["adatp_kept_tokens"] < counts["adatp_num_visual"]
        assert abs(counts["adatp_flops_visual_ratio"] - 0.273) < 0.02


@pytest.fixture(scope="module", params=[f[0] for f in FAMILIES])
def family_dir(request, tmp_path_factory):
    """A tiny random-weight checkpoint directory of each family adatp supports (tests/families)."""
    from adatp.models.tiny import build_tiny

    _, name, overrides = next(f for f in FAMILIES if f[0] == request.param)
    return build_tiny(name, tmp_path_factory.mktemp(request.param) / "model", seed=0, **overrides)


def test_every_family_answers_as_adatp_eval_mcq(family_dir):
    """On each family the plug-in's answer and kept tokens equal the harness's (answer_item)."""
    from adatp.eval.harness import RunSpec, answer_item
    from adatp.inputs import prepare_inputs
    from adatp.integrations.lmms_eval import AdaTPModel
    from adatp.pipeline import load_model
    from adatp.tasks.jsonl import load_items
    from adatp.tasks.mcq import LETTERS, letter_token_ids

    item = load_items(ITEMS)[0]
    frames = adatp.read_video(item.video, num_frames=4)  # the plug-in's max_frames_num
    reference_model = load_model(family_dir)
    inputs = dict(prepare_inputs(family_dir, frames, item.prompt()))
    tokenizer = AutoTokenizer.from_pretrained(family_dir)
    expected = answer_item(reference_model, inputs, RunSpec("adatp", (("retention", 0.3),)),
                           letter_token_ids(tokenizer), len(item.options))
    model = AdaTPModel(pretrained=str(family_dir), method="adatp", retention=0.3, max_frames_num=4, device="cpu")
    model.task_dict = {"t": {"test": [{"video": str(item.video), "options": item.options}]}}
    out = model.generate_until([_instance("generate_until", (item.prompt(), {"max_new_tokens": 1, "adatp_options_field": "options"},
                                                              lambda d: [d["video"]], 0, "t", "test"))])[0]
    counts = out.token_counts.to_dict()
    assert out.text == LETTERS[expected["predicted"]]
    assert counts["adatp_kept_tokens"] == expected["kept_final"] < expected["num_visual"]
    assert counts["adatp_flops_visual_ratio"] == expected["flops_visual_ratio"]
