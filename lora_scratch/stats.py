"""Paired comparisons of seeded runs: is the gap between two methods larger than the seeds can explain?

Every sweep in the course is paired by design: seed k of method A and seed k of method B start from the same
initial adapter draw and see the same batches. The fair question is then about the *differences* d_k = a_k - b_k,
not about two separate spreads: shared seed effects cancel in d_k, so the paired interval is narrower than
any rule on the two unpaired standard deviations (and it is the textbook one).

    d = paired_difference(lora_losses, full_losses)      # one number per seed, same seeds in both lists
    d.mean, d.low, d.high                                 # mean difference and its 95 % t-interval
    d.verdict("LoRA", "full FT")                         # 'LoRA lower', 'full FT lower' or 'no difference shown'

The t-distribution's quantiles are computed here from its CDF (the regularised incomplete beta function), so
the package needs no SciPy; tests check them against a printed t-table and, where SciPy is installed, against it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of the incomplete beta function, evaluated by the modified Lentz method."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return result


def incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularised incomplete beta function, for 0 <= x <= 1 and a, b > 0."""
    if not 0 <= x <= 1:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0, 1):
        return float(x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):  # the fraction converges fast on this side; use symmetry on the other
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1 - math.exp(log_front) * _beta_continued_fraction(1 - x, b, a) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * incomplete_beta(df / (df + t * t), df / 2, 0.5)  # P(T > |t|)
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (bisection on t_cdf; 60 halvings reach double precision)."""
    if not 0 < p < 1:
        raise ValueError(f"p must be strictly between 0 and 1, got {p}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


@dataclass(frozen=True)
class PairedDifference:
    """Summary of d_k = a_k - b_k over n paired seeds."""

    n: int
    mean: float  # mean of d
    sd: float  # sample standard deviation of d (n - 1 in the denominator)
    low: float  # the t-interval for the mean of d
    high: float
    confidence: float
    a_lower: int  # seeds where a < b
    b_lower: int  # seeds where b < a

    @property
    def shown(self) -> bool:
        """True when the interval excludes 0: the seeds show a difference at this confidence."""
        return self.low > 0 or self.high < 0

    def verdict(self, a: str = "a", b: str = "b") -> str:
        """For losses (lower is better): which one is lower, or that the seeds cannot tell."""
        if not self.shown:
            return "no difference shown"
        return f"{a} lower" if self.high < 0 else f"{b} lower"

    def __str__(self) -> str:
        pct = f"{self.confidence:.0%}"
        return (f"{self.mean:+.4f} (sd {self.sd:.4f}, {pct} CI {self.low:+.4f} … {self.high:+.4f}, n={self.n}; "
                f"a lower in {self.a_lower}, b lower in {self.b_lower})")


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    """The paired t-interval of mean(a - b): a[k] and b[k] must come from the same seed."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) != len(b):
        raise ValueError(f"paired samples need one value per seed on both sides; got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError(f"a t-interval needs at least 2 paired seeds, got {len(a)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    if not all(math.isfinite(v) for v in a + b):
        raise ValueError("a value is NaN or infinite (a diverged run?); drop that seed on both sides, and say so")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return PairedDifference(n, mean, sd, mean - half, mean + half, confidence,
                            sum(x < 0 for x in d), sum(x > 0 for x in d))
