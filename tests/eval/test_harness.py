"""The resumable harness and `adatp eval needle` on the tiny random model (pipeline, not accuracy)."""

import json
import subprocess
import sys

import pytest

from adatp.errors import ConfigError
from adatp.eval.harness import RunSpec, build_specs, run_needle, summarize


def test_build_specs_runs_none_once_and_checks_targets():
    specs = build_specs(["none", "adatp"], [0.5, 0.25])
    assert specs == [RunSpec("none"), RunSpec("adatp", (("flops_ratio", 0.5),)), RunSpec("adatp", (("flops_ratio", 0.25),))]
    assert specs[1].slug == "adatp_flops0.5"
    with pytest.raises(ConfigError, match="unknown method"):
        build_specs(["magic"], [0.5])
    with pytest.raises(ConfigError, match="needs a target"):
        build_specs(["adatp"])
    with pytest.raises(ConfigError, match="flops-ratio"):
        build_specs(["adatp"], [1.5])


def _rows(path):
    """The result rows of a results file (its header line left out)."""
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_resume_skips_done_items_and_redoes_a_torn_one(tiny_model_dir, tmp_path):
    specs = [RunSpec("none"), RunSpec("adatp", (("flops_ratio", 0.3),))]
    run = run_needle(tiny_model_dir, specs, split="validation", count=3, out_dir=tmp_path)
    path = run.path(specs[1])
    lines = path.read_text().splitlines()
    assert len(lines) == 4  # header + 3 items
    header, row = json.loads(lines[0]), json.loads(lines[1])
    assert header["adatp_results"] == 1 and header["run"]["method"] == "adatp"
    assert header["run"]["options"] == {"flops_ratio": 0.3} and header["versions"]["transformers"]
    assert set(row) >= {"item_id", "kind", "position", "answer", "predicted", "correct", "kept_final", "flops_visual_ratio"}
    assert row["flops_visual_ratio"] == pytest.approx(0.3, abs=0.05)
    # A killed run: the last line torn in half. The rerun redoes that item and adds two new ones.
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])
    with pytest.warns(UserWarning, match="torn last line"):
        run = run_needle(tiny_model_dir, specs, split="validation", count=5, out_dir=tmp_path)
    new_lines = path.read_text().splitlines()
    assert new_lines[:3] == lines[:3] and len(new_lines) == 6
    assert json.loads(new_lines[3]) == json.loads(lines[3]) | {"seconds": json.loads(new_lines[3])["seconds"]}
    assert len(_rows(run.path(specs[0]))) == 5
    summary = summarize(run.results[specs[1]])
    assert summary["overall"].total == 5


def test_mixed_runs_record_shots_and_segments_and_complete_older_rows(tiny_model_dir, tmp_path):
    specs = [RunSpec("adatp", (("flops_ratio", 0.3),))]
    run = run_needle(tiny_model_dir, specs, split="validation", count=2, shots="mixed", out_dir=tmp_path)
    single, multi = _rows(run.path(specs[0]))
    assert (single["item_id"], multi["item_id"]) == ("validation-000000-colour", "validation-m000000-colour")
    assert single["shot_type"] == "single" and single["shots"] == [[0, 15]]
    assert multi["shot_type"] == "multi" and len(multi["shots"]) == 2 and multi["event_shots"]
    for row in (single, multi):  # AdaTP's own segments, as frame ranges covering the clip
        assert row["segments"][0][0] == 0 and row["segments"][-1][1] == 15
    summary = summarize(run.results[specs[0]], by=("shot_type",))
    assert set(summary["by_shot_type"]) == {"single", "multi"}
    assert summary["cuts"]["multi"]["cuts"] == 1 and summary["cuts"]["single"]["cuts"] == 0
    # A row written before shots were recorded gets them from its item, and is not redone.
    path = run.path(specs[0])
    header, *rows = path.read_text().splitlines()
    old = {k: v for k, v in json.loads(rows[0]).items() if k not in ("shot_type", "shots", "event_shots")}
    path.write_text("\n".join([header, json.dumps(old), rows[1]]) + "\n")
    again = run_needle(tiny_model_dir, specs, split="validation", count=2, shots="mixed", out_dir=tmp_path)
    assert again.results[specs[0]][0]["shot_type"] == "single" and again.results[specs[0]][0]["seconds"] == old["seconds"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "adatp", *args], capture_output=True, text=True, timeout=600)


def test_eval_needle_cli_end_to_end(tiny_model_dir, tmp_path):
    res = _cli("eval", "needle", "--model", str(tiny_model_dir), "--methods", "none,adatp,fastv",
               "--flops-ratio", ".6,.3", "--split", "validation", "--count", "2", "--out", str(tmp_path), "--json",
               "--plot", str(tmp_path / "acc.png"), "--markdown", str(tmp_path / "table.md"))
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert [(r["method"], r.get("flops_ratio")) for r in payload["runs"]] == [
        ("none", None), ("adatp", 0.6), ("adatp", 0.3), ("fastv", 0.6)]
    # FastV keeps layers 0-1 whole: on the 4-layer tiny model 0.3 is out of reach (and 0.5 would keep
    # no visual token); said, not fatal.
    assert [(s["method"], s["flops_ratio"]) for s in payload["skipped"]] == [("fastv", 0.3)]
    assert "out of reach" in payload["skipped"][0]["reason"]
    assert all(r["overall"]["total"] == 2 for r in payload["runs"])
    assert (tmp_path / "acc.png").stat().st_size > 1000
    text = (tmp_path / "table.md").read_text()
    table = text.split("\n\n")[1].splitlines()  # the accuracy table (then skipped runs, segments vs cuts)
    assert [line.split(" | ")[0] for line in table if "---" not in line][1:] == [
        "| none", "| adatp @ flops ratio 0.6", "| adatp @ flops ratio 0.3", "| fastv @ flops ratio 0.6"]
    assert "skipped fastv @ flops ratio 0.3" in text and "Segments against the shot cuts" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "magic", "--flops-ratio", ".3"], "unknown method"),
        (["--method", "adatp", "--flops-ratio", "0"], "--flops-ratio"),
        (["--method", "adatp", "--flops-ratio", "1.5"], "--flops-ratio"),
        (["--method", "adatp", "--flops-ratio", ".3", "--split", "dev"], "unknown split"),
    ],
)
def test_eval_needle_bad_input(tiny_model_dir, tmp_path, args, message):
    res = _cli("eval", "needle", "--model", str(tiny_model_dir), "--out", str(tmp_path), *args)
    assert res.returncode == 2 and res.stderr.startswith("error:") and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_eval_needle_missing_model(tmp_path):
    res = _cli("eval", "needle", "--model", str(tmp_path / "none"), "--method", "none", "--out", str(tmp_path))
    assert res.returncode == 2 and "does not exist" in res.stderr, res.stderr


def test_paired_comparisons_pair_runs_at_the_same_target_and_with_none():
    from adatp.eval.harness import paired_comparisons

    def rows(pattern):
        return [{"item_id": f"t-{i}", "correct": c == "1"} for i, c in enumerate(pattern)]

    a3, f3, f1 = RunSpec("adatp", (("flops_ratio", 0.3),)), RunSpec("fastv", (("flops_ratio", 0.3),)), \
        RunSpec("fastv", (("flops_ratio", 0.1),))
    results = {RunSpec("none"): rows("1111"), a3: rows("1101"), f3: rows("0100"), f1: rows("0000")}
    got = {(c["method"], c["against"]): (c["only_method"], c["only_other"], c["items"]) for c in paired_comparisons(results, "adatp")}
    assert got == {(a3.label, "none"): (0, 1, 4), (a3.label, f3.label): (2, 0, 4)}  # fastv @ 0.1 has no adatp partner
    with pytest.raises(ConfigError, match="no run of 'visionzip'"):
        paired_comparisons(results, "visionzip")
    # p-values: (0, 1) -> 1.0, (2, 0) -> 0.5; Holm over the two: 0.5 x 2 = 1.0, then 1.0.
    assert [c["p_holm"] for c in paired_comparisons(results, "adatp")] == [1.0, 1.0]


def test_paired_comparisons_within_groups():
    from adatp.eval.harness import paired_comparisons

    def rows(pattern):
        return [{"item_id": f"t-{i}", "correct": c == "1", "shot_type": "single" if i < 4 else "multi"}
                for i, c in enumerate(pattern)]

    a3, f3 = RunSpec("adatp", (("flops_ratio", 0.3),)), RunSpec("fastv", (("flops_ratio", 0.3),))
    results = {a3: rows("11111111"), f3: rows("11110000")}
    got = {c["group"]: (c["only_method"], c["only_other"], c["items"], c["p_mcnemar"], c["p_holm"])
           for c in paired_comparisons(results, "adatp", by="shot_type")}
    # multi: 4 items only adatp gets right: p = 2 / 2**4 = 0.125; Holm over two: 0.25; single: no discordance.
    assert got == {"shot_type=multi": (4, 0, 4, 0.125, 0.25), "shot_type=single": (0, 0, 4, 1.0, 1.0)}


def test_method_specs_label_each_run_by_its_full_spec():
    specs = build_specs(["adatp", "adatp:alpha=0", "adatp:dedup_threshold=2", "adatp:segmentation=false"], [0.3])
    assert [s.label for s in specs] == [
        "adatp @ flops ratio 0.3", "adatp:alpha=0 @ flops ratio 0.3", "adatp:dedup_threshold=2 @ flops ratio 0.3",
        "adatp:segmentation=false @ flops ratio 0.3"]
    assert len({s.slug for s in specs}) == 4 and specs[0].slug == "adatp_flops0.3"
    assert specs[3].options == {"segmentation": False, "flops_ratio": 0.3}
    with pytest.raises(ConfigError, match="unknown option 'alhpa'"):
        build_specs(["adatp:alhpa=0"], [0.3])


def test_eval_needle_ablation_sweep_from_the_cli(tiny_model_dir, tmp_path):
    methods = "adatp,adatp:alpha=0,adatp:dedup_threshold=2,adatp:segmentation=false"
    res = _cli("eval", "needle", "--model", str(tiny_model_dir), "--methods", methods, "--flops-ratio", ".5",
               "--split", "validation", "--count", "1", "--out", str(tmp_path), "--json", "--paired", "adatp",
               "--markdown", str(tmp_path / "t.md"))
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert [r["spec"] for r in payload["runs"]] == methods.split(",")
    assert payload["runs"][3]["segmentation"] is False and payload["runs"][1]["alpha"] == 0
    assert {c["against"] for c in payload["paired"]} == {s + " @ flops ratio 0.5" for s in methods.split(",")[1:]}
    assert "| adatp:dedup_threshold=2 @ flops ratio 0.5" in (tmp_path / "t.md").read_text()
    rows = [json.loads(line) for f in sorted(tmp_path.rglob("*.jsonl")) for line in f.read_text().splitlines()[1:]]
    assert sorted(r["spec"] for r in rows) == sorted(methods.split(","))
    headers = [json.loads(f.read_text().splitlines()[0]) for f in sorted(tmp_path.rglob("*.jsonl"))]
    assert sorted(h["run"]["spec"] for h in headers) == sorted(methods.split(","))


def test_eval_needle_unknown_method_option_exits_2(tiny_model_dir, tmp_path):
    res = _cli("eval", "needle", "--model", str(tiny_model_dir), "--methods", "adatp,adatp:alhpa=0",
               "--flops-ratio", ".5", "--out", str(tmp_path))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith("error:") and "unknown option 'alhpa'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_items_are_dealt_by_remaining_runs_not_by_position():
    from adatp.eval.harness import _deal

    assigned = [0, 0]
    # --shots mixed after a resume: single-shot items need 3 runs, multi-shot ones 31. Dealing by
    # position (i mod 2) would give process 1 every multi-shot item.
    deals = [_deal(["run"] * n, assigned) for n in (3, 31, 3, 31, 3, 31, 0)]
    assert deals == [0, 1, 0, 0, 1, 1, -1] and assigned == [37, 65]
