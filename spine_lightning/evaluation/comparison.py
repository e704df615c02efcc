"""Each method against the baseline, paired: the statistics behind the ablation report's verdicts.

A pair is one test crop (subject, level) scored by a method's run and by the baseline's run of the
same seed, on the same (clean or perturbed) crops. Over all pairs of a level (or of all levels for
"mean"): the mean difference, its 95 % t-interval and the two-sided Wilcoxon signed-rank p-value
(SciPy). The same subject appears once per seed, so pairs are not fully independent: the p-value
is a guide, and a difference is called real only when p < 0.05 and the interval excludes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Difference:
    method: str
    row: str  # a level, or "mean" (every level's pairs together)
    n: int  # pairs
    mean: float  # method - baseline
    low: float
    high: float
    p: float

    @property
    def significant(self) -> bool:
        return self.p < ALPHA and (self.low > 0 or self.high < 0)

    def words(self, metric: str = "IoU") -> str:
        if self.n < 2:
            return f"{self.method} vs baseline, {self.row}: too few pairs ({self.n}) to compare"
        verdict = ("higher" if self.mean > 0 else "lower") if self.significant else "no significant difference"
        return (f"{self.method} vs baseline, {self.row}: {self.mean:+.3f} {metric} "
                f"[{self.low:+.3f}, {self.high:+.3f}], p = {self.p:.3g} over {self.n} pairs: {verdict}")


def paired_values(cases: dict, method: str, baseline: str, condition: str, level: str | None):
    """Method and baseline values of every pair. `cases`: {(method, seed): [row, ...]} with rows
    {condition, subject, level, value}; `level` None: all levels."""
    a, b = [], []
    for (m, seed), rows in cases.items():
        if m != method or (baseline, seed) not in cases:
            continue
        base = {(r["subject"], r["level"]): r["value"] for r in cases[(baseline, seed)] if r["condition"] == condition}
        for r in rows:
            key = (r["subject"], r["level"])
            if r["condition"] == condition and key in base and (level is None or r["level"] == level):
                a.append(r["value"])
                b.append(base[key])
    return np.asarray(a, dtype=float), np.asarray(b, dtype=float)


def difference(method: str, row: str, values: np.ndarray, base: np.ndarray) -> Difference:
    d = values - base
    n = len(d)
    if n < 2:
        return Difference(method, row, n, float(d.mean()) if n else math.nan, math.nan, math.nan, math.nan)
    mean, sem = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * sem
    # all pairs equal: no evidence of any difference (wilcoxon refuses an all-zero sample)
    p = 1.0 if not np.any(d) else float(stats.wilcoxon(d).pvalue)
    return Difference(method, row, n, mean, mean - half, mean + half, p)


def compare_with_baseline(cases: dict, methods, rows, baseline: str = "baseline",
                          condition: str = "test") -> list[Difference]:
    """One Difference per method other than the baseline and per row (levels, then "mean")."""
    out = []
    for method in methods:
        if method == baseline:
            continue
        for row in rows:
            values, base = paired_values(cases, method, baseline, condition, None if row == "mean" else row)
            out.append(difference(method, row, values, base))
    return out
