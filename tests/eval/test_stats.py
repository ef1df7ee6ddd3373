import math

import pytest

from adatp.eval.stats import accuracy, grouped_accuracy, wilson_interval


@pytest.mark.parametrize(
    "correct, total, low, high",
    [
        (0, 10, 0.0, 0.27753),  # Wilson (z=1.96) values from the closed form, checked by hand
        (10, 10, 0.72247, 1.0),
        (5, 10, 0.23659, 0.76341),
        (81, 100, 0.72220, 0.87495),
    ],
)
def test_wilson_interval_known_values(correct, total, low, high):
    lo, hi = wilson_interval(correct, total)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_wilson_edge_cases():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_grouped_accuracy():
    rows = [{"kind": "a", "correct": True}, {"kind": "a", "correct": False}, {"kind": "b", "correct": True}]
    groups = grouped_accuracy(rows, "kind")
    assert (groups["a"].correct, groups["a"].total, groups["b"].value) == (1, 2, 1.0)
    assert accuracy([True, True, False]).value == pytest.approx(2 / 3)


def test_mcnemar_exact_by_hand():
    from adatp.eval.stats import mcnemar_exact

    assert mcnemar_exact(7, 4) == pytest.approx(2 * (1 + 11 + 55 + 165 + 330) / 2**11)  # 0.549
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32) and mcnemar_exact(0, 5) == mcnemar_exact(5, 0)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0  # capped, not 2 * 0.66
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_paired_discordance_counts_only_shared_items():
    from adatp.eval.stats import paired_discordance

    a = [{"item_id": i, "correct": c} for i, c in (("x", True), ("y", False), ("z", True), ("only-a", True))]
    b = [{"item_id": i, "correct": c} for i, c in (("x", True), ("y", True), ("z", False), ("w", False))]
    assert paired_discordance(a, b) == (1, 1, 3)


def test_holm_by_hand():
    from adatp.eval.stats import holm

    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


def test_cut_agreement_by_hand():
    from adatp.eval.stats import cut_agreement

    rows = [
        {"shots": [[0, 4], [5, 9], [10, 15]], "segments": [[0, 4], [5, 12], [13, 15]]},  # cut 5 found, 10 missed, 13 extra
        {"shots": [[0, 15]], "segments": [[0, 7], [8, 15]]},  # no cut, one extra
        {"shots": [[0, 15]]},  # no segments recorded: left out
    ]
    assert cut_agreement(rows) == {"items": 2, "cuts": 2, "found": 1, "extra": 2}
    assert cut_agreement(rows[2:]) is None
