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
