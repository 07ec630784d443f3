"""lora_scratch.stats: the paired t-interval, checked against a printed t-table and a textbook example."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_scratch.stats import incomplete_beta, paired_difference, t_cdf, t_quantile

# Two-sided 95 % critical values t_{0.975, df} as printed in any t-table (e.g. Student's table in
# Montgomery & Runger, Applied Statistics and Probability for Engineers, Table V), three decimals.
T_TABLE_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 20: 2.086, 29: 2.045}
T_TABLE_995 = {2: 9.925, 4: 4.604, 10: 3.169}


@pytest.mark.parametrize("df, t", T_TABLE_975.items())
def test_t_quantile_matches_the_printed_table_at_95(df, t):
    assert round(t_quantile(0.975, df), 3) == t


@pytest.mark.parametrize("df, t", T_TABLE_995.items())
def test_t_quantile_matches_the_printed_table_at_99(df, t):
    assert round(t_quantile(0.995, df), 3) == t


def test_closed_forms_for_one_and_two_degrees_of_freedom():
    for t in (-3.0, -0.4, 0.0, 0.7, 5.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_against_scipy_where_installed():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 7, 30, 200):
        for p in (0.6, 0.9, 0.975, 0.999):
            assert t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9)
    for x, a, b in ((0.3, 2.0, 5.0), (0.9, 0.5, 0.5), (0.01, 10.0, 0.5)):
        assert incomplete_beta(x, a, b) == pytest.approx(scipy_stats.beta.cdf(x, a, b), rel=1e-10)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(p=st.floats(0.001, 0.999), df=st.integers(1, 100))
def test_quantile_inverts_the_cdf(p, df):
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-9)


def test_textbook_paired_interval():
    # d = a - b = (0.1, 0.3, 0.2, 0.4, 0.0): mean 0.2, sd sqrt(0.025), 95 % CI 0.2 ± 2.776 * sd / sqrt 5
    a = [1.1, 1.3, 1.2, 1.4, 1.0]
    b = [1.0, 1.0, 1.0, 1.0, 1.0]
    d = paired_difference(a, b)
    half = 2.776 * math.sqrt(0.025) / math.sqrt(5)
    assert (d.n, d.mean) == (5, pytest.approx(0.2))
    assert d.sd == pytest.approx(math.sqrt(0.025))
    assert d.low == pytest.approx(0.2 - half, abs=1e-4) and d.high == pytest.approx(0.2 + half, abs=1e-4)
    assert (d.a_lower, d.b_lower) == (0, 4)  # one seed ties
    assert d.shown and d.verdict("A", "B") == "B lower"


def test_pairing_sees_what_two_spreads_cannot():
    # every seed favours a by 0.01 while the seeds themselves spread by 0.1: the paired interval shows it
    b = [1.0, 1.1, 1.2]
    a = [x - 0.01 + e for x, e in zip(b, (0.001, -0.001, 0.0))]
    d = paired_difference(a, b)
    assert d.high < 0 and d.verdict("LoRA", "full") == "LoRA lower" and d.a_lower == 3


def test_a_gap_inside_the_noise_is_not_shown():
    d = paired_difference([1.0, 1.2, 0.9], [1.1, 1.0, 1.0])
    assert not d.shown and d.verdict() == "no difference shown" and d.low < 0 < d.high


@pytest.mark.parametrize("a, b, message", [
    ([1.0, 2.0], [1.0], "one value per seed"),
    ([1.0], [2.0], "at least 2"),
    ([1.0, float("nan")], [1.0, 2.0], "NaN"),
])
def test_bad_input_says_what_to_do(a, b, message):
    with pytest.raises(ValueError, match=message):
        paired_difference(a, b)
