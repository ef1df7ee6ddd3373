"""Accuracy with a 95% Wilson score interval, overall and per group."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


@dataclass(frozen=True)
class Accuracy:
    correct: int
    total: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    def to_dict(self) -> dict[str, float | int]:
        return {"accuracy": self.value, "correct": self.correct, "total": self.total,
                "ci95_low": self.low, "ci95_high": self.high}

    def __str__(self) -> str:
        if not self.total:
            return "-"
        return f"{100 * self.value:.1f} [{100 * self.low:.1f}, {100 * self.high:.1f}] (n={self.total})"


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (well-behaved at 0 and n successes)."""
    if total <= 0:
        return (float("nan"), float("nan"))
    if not 0 <= correct <= total:
        raise ValueError(f"correct must be in [0, {total}], got {correct}")
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy(outcomes: Iterable[bool]) -> Accuracy:
    values = list(outcomes)
    correct = sum(bool(v) for v in values)
    low, high = wilson_interval(correct, len(values))
    return Accuracy(correct, len(values), low, high)


def grouped_accuracy(rows: list[dict], key: str) -> dict[str, Accuracy]:
    """Accuracy of ``rows`` (each with "correct") per value of ``rows[i][key]``, sorted by key."""
    groups: dict[str, list[bool]] = {}
    for row in rows:
        groups.setdefault(str(row[key]), []).append(bool(row["correct"]))
    return {k: accuracy(v) for k, v in sorted(groups.items())}


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs of a paired comparison: items only
    ``a`` answered right, items only ``b`` did. Under "no difference" each discordant item goes
    either way with probability 1/2, so p = P(a binomial(n, 1/2) is as uneven or more)."""
    if min(only_a, only_b) < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a}, {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order: the k-th smallest of m is multiplied
    by m - k (k from 0), then made non-decreasing in that order and capped at 1. A comparison is
    significant at level a over the whole family when its adjusted p is <= a."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - k) * p_values[i]))
        adjusted[i] = running
    return adjusted


def cut_agreement(rows: list[dict]) -> dict[str, int] | None:
    """How a method's video segments match the shots, over result rows that record both
    (``segments`` and ``shots``: lists of [first, last] frame): true cuts, those the segments also
    cut at, and segment cuts that are no shot cut. None when no row records segments."""
    rows = [r for r in rows if r.get("segments") and r.get("shots")]
    if not rows:
        return None
    cuts = found = extra = 0
    for r in rows:
        true = {int(first) for first, _ in r["shots"][1:]}
        made = {int(first) for first, _ in r["segments"][1:]}
        cuts, found, extra = cuts + len(true), found + len(true & made), extra + len(made - true)
    return {"items": len(rows), "cuts": cuts, "found": found, "extra": extra}


def _row_id(row: dict) -> str:
    """A result row's item id (``id`` in ``adatp eval mcq`` rows, ``item_id`` in needle rows)."""
    return row["id"] if "id" in row else row["item_id"]


def paired_discordance(rows_a: list[dict], rows_b: list[dict]) -> tuple[int, int, int]:
    """(right only in a, right only in b, items in both) over the items both runs answered (by item_id)."""
    b_by_id = {_row_id(r): bool(r["correct"]) for r in rows_b}
    common = [(bool(r["correct"]), b_by_id[_row_id(r)]) for r in rows_a if _row_id(r) in b_by_id]
    return sum(a and not b for a, b in common), sum(b and not a for a, b in common), len(common)
