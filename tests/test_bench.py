"""bench.py: the mechanics (order, warm-up, medians, ratios, threads), checked with fake timers, never real times."""
import pytest
import torch
import torch.nn as nn

from lora_scratch import bench
from lora_scratch.bench import Timing, compare, count_ops, fixed_threads, format_table, ratio, schedule


class FakeClock:
    """A timer that advances only when a candidate 'runs': candidate name -> seconds per call."""

    def __init__(self, cost: dict[str, float]):
        self.now, self.cost, self.calls = 0.0, cost, []

    def __call__(self) -> float:
        return self.now

    def fn(self, name: str):
        def run():
            self.calls.append(name)
            self.now += self.cost[name]
        return run


def test_schedule_interleaves_rounds():
    assert schedule(["A", "B"], 3) == ["A", "B", "A", "B", "A", "B"]
    assert schedule(["A", "B", "C"], 1) == ["A", "B", "C"]


def test_compare_warms_up_then_interleaves():
    clock = FakeClock({"A": 1.0, "B": 2.0})
    compare({"A": clock.fn("A"), "B": clock.fn("B")}, rounds=3, warmup=1, timer=clock)
    assert clock.calls == ["A", "B"] + ["A", "B"] * 3  # warm-up round first, then A B A B A B


def test_warmup_calls_are_not_timed():
    clock = FakeClock({"A": 1.0})
    res = compare({"A": clock.fn("A")}, rounds=4, warmup=3, timer=clock)
    assert len(res["A"].times) == 4 and len(clock.calls) == 7


def test_repeat_gives_time_per_call():
    clock = FakeClock({"A": 0.5, "B": 1.5})
    res = compare({"A": clock.fn("A"), "B": clock.fn("B")}, rounds=2, warmup=0, repeat=4, timer=clock)
    assert res["A"].times == [0.5, 0.5] and res["B"].times == [1.5, 1.5]
    assert clock.calls == ["A"] * 4 + ["B"] * 4 + ["A"] * 4 + ["B"] * 4


def test_ratio_uses_medians_and_is_a_over_b():
    res = {"A": Timing("A", [1.0, 1.0, 100.0]), "B": Timing("B", [2.0, 2.0, 2.0])}
    assert ratio(res, "A", "B") == 0.5  # the outlier 100 moves the mean, not the median
    assert ratio(res, "B", "A") == 2.0


def test_spread_is_the_interquartile_range():
    t = Timing("x", [1.0, 2.0, 3.0, 4.0, 5.0])
    assert t.median == 3.0 and t.spread == (2.0, 4.0)


def test_format_table_names_every_candidate_with_its_ratio():
    res = {"base": Timing("base", [0.001, 0.001]), "slow": Timing("slow", [0.002, 0.002])}
    table = format_table(res, baseline="base")
    assert "base" in table and "slow" in table and "2.00x" in table and "1.00x" in table


def test_fixed_threads_sets_and_restores():
    before = torch.get_num_threads()
    with fixed_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_compare_turns_autograd_off_unless_asked():
    seen = []
    compare({"A": lambda: seen.append(torch.is_grad_enabled())}, rounds=1, warmup=0)
    compare({"A": lambda: seen.append(torch.is_grad_enabled())}, rounds=1, warmup=0, grad=True)
    assert seen == [False, True]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="rounds"):
        compare({"A": lambda: None}, rounds=0)


def test_count_ops_is_deterministic_and_counts_extra_layers():
    x = torch.randn(1, 8)
    one, two = nn.Linear(8, 8), nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8))
    assert count_ops(lambda: one(x)) == count_ops(lambda: one(x)) >= 1
    assert count_ops(lambda: two(x)) > count_ops(lambda: one(x))


def test_timing_claim_prints_and_only_make_bench_asserts(capsys, monkeypatch):
    monkeypatch.delenv(bench.STRICT_TIMING_ENV, raising=False)
    bench.timing_claim(2.5, ">", 2, "batching is more than twice as fast")
    bench.timing_claim(1.5, ">", 2, "batching is more than twice as fast")  # printed, not raised
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "timing claim: batching is more than twice as fast: 2.50 > 2 holds in this run"
    assert out[1].startswith("timing claim: batching is more than twice as fast: 1.50 > 2 does not hold")
    monkeypatch.setenv(bench.STRICT_TIMING_ENV, "strict")
    bench.timing_claim(0.9, "<", 1.2, "merged costs what the base costs")
    with pytest.raises(AssertionError, match="make bench"):
        bench.timing_claim(1.5, "<", 1.2, "merged costs what the base costs")
    with pytest.raises(ValueError, match="'<' or '>'"):
        bench.timing_claim(1.0, "<=", 1.2, "x")
