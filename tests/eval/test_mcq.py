"""`adatp eval mcq` on local clips: tables, bad items, a killed run resumed, encode once, 2 processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from adatp.video.synthetic import write_synthetic_video
from tests.families import FAMILY_IDS, family_model, make_inputs

COLOURS = ["red", "green", "blue", "yellow"]


@pytest.fixture(scope="module")
def items_file(tmp_path_factory):
    """Six items over three real (synthetic) clips, plus one whose video is missing."""
    folder = tmp_path_factory.mktemp("mcq")
    for k in range(3):
        write_synthetic_video(folder / f"clip{k}.mp4", num_frames=12, size=(96, 96), seed=k)
    rows = [{"id": f"q{k}", "video": f"clip{k % 3}.mp4", "question": f"Which colour is number {k}?",
             "options": COLOURS[: 2 + k % 3], "answer": "AB"[k % 2], "num_frames": 4,
             "kind": "colour" if k % 2 else "shape", "event_position": ["start", "middle", "end"][k % 3]}
            for k in range(6)]
    rows.insert(3, {"id": "gone", "video": "missing.mp4", "question": "Q?", "options": ["a", "b"], "answer": "A"})
    path = folder / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cli(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "adatp", *args], capture_output=True, text=True, timeout=timeout, env=env)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_eval_mcq_end_to_end_with_a_bad_item(tiny_model_dir, items_file, tmp_path):
    res = _cli("eval", "mcq", str(items_file), "--model", str(tiny_model_dir), "--methods", "none,adatp",
               "--flops-ratio", ".5", "--by", "kind,event_position", "--out", str(tmp_path), "--json",
               "--markdown", str(tmp_path / "t.md"), "--paired", "adatp")
    assert res.returncode == 0, res.stderr
    assert "skipped item gone" in res.stderr and "video file not found" in res.stderr
    payload = json.loads(res.stdout)
    assert [r["spec"] for r in payload["runs"]] == ["none", "adatp"]
    assert payload["versions"]["transformers"] and len(payload["model_identity"]["config_sha256"]) == 16
    assert payload["runs"][1]["method_config"]["alpha"] == 1.0  # every option, defaults included
    header = json.loads((tmp_path / tiny_model_dir.name / "items" / "adatp_flops0.5.jsonl").read_text().splitlines()[0])
    assert header["run"]["method_config"] == payload["runs"][1]["method_config"]
    assert header["model"] == payload["model_identity"] and header["run"]["options"] == {"flops_ratio": 0.5}
    assert payload["bad_items"][0]["id"] == "gone"
    for run in payload["runs"]:
        assert run["overall"]["total"] == 6 and set(run["by_kind"]) == {"colour", "shape"}
        assert set(run["by_event_position"]) == {"start", "middle", "end"}
        rows = _rows(tmp_path / tiny_model_dir.name / "items" / f"{run['method']}{'_flops0.5' if run['method'] != 'none' else ''}.jsonl")
        assert [r["id"] for r in rows] == [f"q{k}" for k in range(6)]
        for r in rows:
            assert r["answer"] in "ABCD" and r["predicted"] in "ABCD" and r["correct"] == (r["answer"] == r["predicted"])
            assert len(r["option_logits"]) == 2 + int(r["id"][1]) % 3
    assert payload["paired"][0]["items"] == 6
    assert "| adatp @ flops ratio 0.5 |" in (tmp_path / "t.md").read_text()


def test_eval_mcq_unknown_by_field_is_one_line(tiny_model_dir, items_file, tmp_path):
    res = _cli("eval", "mcq", str(items_file), "--model", str(tiny_model_dir), "--method", "none", "--by", "colour",
               "--out", str(tmp_path))
    assert res.returncode == 2 and "--by colour: no item has that field" in res.stderr, res.stderr


def test_a_killed_run_resumes_with_nothing_lost_or_counted_twice(tiny_model_dir, items_file, tmp_path):
    args = ["eval", "mcq", str(items_file), "--model", str(tiny_model_dir), "--methods", "none,adatp",
            "--flops-ratio", ".5", "--json"]
    whole = _cli(*args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    target = out / tiny_model_dir.name / "items" / "adatp_flops0.5.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "adatp", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and (not target.is_file() or len(target.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(_rows(target))
    assert 2 <= done_before < 6, done_before  # killed mid-way
    again = _cli(*args, "--out", str(out))
    assert again.returncode == 0, again.stderr
    for name in ("none.jsonl", "adatp_flops0.5.jsonl"):
        resumed = _rows(out / tiny_model_dir.name / "items" / name)
        reference = _rows(tmp_path / "whole" / tiny_model_dir.name / "items" / name)
        assert sorted(r["id"] for r in resumed) == [f"q{k}" for k in range(6)]  # each once
        strip = lambda rows: {r["id"]: (r["predicted"], r["option_logits"]) for r in rows}  # noqa: E731
        assert strip(resumed) == strip(reference)


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_the_vision_tower_runs_once_per_item_and_answers_do_not_change(family):
    """Every run on an item after the first reuses the tower's output; logits stay bit-identical."""
    import adatp
    from adatp.adapters.base import get_adapter
    from adatp.runtime.encode_cache import reuse_outputs

    model = family_model(family)
    inputs = make_inputs(model)

    def answers():
        out = []
        for method, options in (("none", {}), ("adatp", {"flops_ratio": 0.5}), ("fastvid", {"flops_ratio": 0.5})):
            with torch.no_grad():
                if method == "none":
                    out.append(model(**inputs).logits[0, -1])
                else:
                    with adatp.prune(model, method, **options):
                        out.append(model(**inputs).logits[0, -1])
        return out

    plain = answers()
    tower = get_adapter(model).vision_tower()
    with reuse_outputs(tower) as counts:
        cached = answers()
    assert counts == {"computed": 1, "reused": 2}
    assert "forward" not in tower.__dict__  # the module's own forward is back
    for a, b in zip(plain, cached):
        assert torch.equal(a, b)


def test_the_process_barrier_waits_for_the_slowest_process(tmp_path):
    """Process 0 merges the shards after the barrier: if it did not wait (accelerate's PartialState
    under torchrun on CPU is not distributed), a slower process's last rows would miss the merge."""
    script = tmp_path / "barrier.py"
    script.write_text(
        "import os, time\n"
        "from adatp.eval.harness import _barrier\n"
        "if os.environ['RANK'] == '1':\n    time.sleep(2)\n"
        "t = time.time()\n_barrier(int(os.environ['WORLD_SIZE']))\n"
        "open(os.path.join(os.path.dirname(__file__), 'waited' + os.environ['RANK']), 'w').write(str(time.time() - t))\n")
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script)], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-2000:]
    # each process writes its own file: two processes printing to one pipe can interleave their lines
    waited = {rank: float((tmp_path / f"waited{rank}").read_text()) for rank in "01"}
    assert waited["0"] > 1.5 and waited["1"] < 1.5


def test_two_processes_equal_one_process_item_for_item(tiny_model_dir, items_file, tmp_path):
    args = ["eval", "mcq", str(items_file), "--model", str(tiny_model_dir), "--methods", "none,adatp",
            "--flops-ratio", ".5", "--json"]
    single = _cli(*args, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # torchrun, not `accelerate launch --cpu`: accelerate's CPU launcher starts one process whatever
    # --num_processes says (several CPU processes need MPI there).
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "adatp", *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    payload = json.loads(res.stdout)  # only process 0 prints
    assert payload["processes"] == 2  # really two: each wrote its own shard, merged by process 0
    assert [r["overall"]["total"] for r in payload["runs"]] == [6, 6]
    for name in ("none.jsonl", "adatp_flops0.5.jsonl"):
        folder = tmp_path / "two" / tiny_model_dir.name / "items"
        assert not list(folder.glob("*.rank*.jsonl"))  # merged, then removed
        two, one = _rows(folder / name), _rows(tmp_path / "one" / tiny_model_dir.name / "items" / name)
        assert sorted(r["id"] for r in two) == sorted(r["id"] for r in one)
        key = lambda rows: {r["id"]: (r["predicted"], r["option_logits"]) for r in rows}  # noqa: E731
        assert key(two) == key(one)
