"""Checker verdicts as data (issue 12): collected in the session, appended to a JSON-lines file for grade.py,
and raised in strict mode for autograders (nbgrader, otter) that score a cell by whether it raises."""
import json

import pytest
from checklib import stub

from lora_scratch import checks
from lora_scratch.toy import merged_weight


def wrong(W, A, B, alpha, r):
    return W + B @ A  # forgot the scaling


def test_every_verdict_is_recorded_with_its_status_and_message(tmp_path, monkeypatch, capsys):
    log = tmp_path / "verdicts.jsonl"
    monkeypatch.setenv("LORA_SCRATCH_VERDICTS", str(log))
    before = len(checks.verdicts())
    for fn in (merged_weight, wrong, stub):
        checks.check_merged_weight(fn)
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [r["status"] for r in rows] == ["pass", "fail", "todo"]
    assert {r["exercise"] for r in rows} == {"merged_weight"}
    assert all(r["message"] in printed for r in rows)  # the same words the learner saw
    assert checks.verdicts()[before:] == rows


def test_the_fallback_rerun_is_recorded_as_todo(tmp_path, monkeypatch, capsys):
    log = tmp_path / "v.jsonl"
    monkeypatch.setenv("LORA_SCRATCH_VERDICTS", str(log))
    fallback = checks.check_merged_weight(stub)  # the reference, marked
    checks.check_merged_weight(fallback)  # the check cell run twice
    assert [json.loads(x)["status"] for x in log.read_text().splitlines()] == ["todo", "todo"]


def test_strict_mode_raises_after_printing_and_passes_quietly(monkeypatch, capsys):
    monkeypatch.setenv("LORA_SCRATCH_CHECKS", "strict")
    assert checks.check_merged_weight(merged_weight) is merged_weight
    with pytest.raises(checks.CheckFailed, match="merged_weight: fail"):
        checks.check_merged_weight(wrong)
    with pytest.raises(checks.CheckFailed, match="merged_weight: todo"):
        checks.check_merged_weight(stub)
    assert capsys.readouterr().out.count("merged_weight") >= 3  # the verdict is printed before the raise


def test_without_the_variables_nothing_is_written_and_nothing_raises(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LORA_SCRATCH_VERDICTS", raising=False)
    monkeypatch.delenv("LORA_SCRATCH_CHECKS", raising=False)
    monkeypatch.chdir(tmp_path)
    checks.check_merged_weight(wrong)
    assert list(tmp_path.iterdir()) == []


def test_strict_mode_still_leaves_the_reference_bound_for_the_cells_below(monkeypatch, capsys):
    """In a notebook, `name = checks.check_name(name)` never rebinds when the check raises; strict mode binds the
    reference in the learner's namespace itself, so one wrong answer does not fail every later check."""
    monkeypatch.setenv("LORA_SCRATCH_CHECKS", "strict")
    namespace = {"__name__": "__main__"}
    exec("def merged_weight(W, A, B, alpha, r):\n    return W + B @ A\n", namespace)
    with pytest.raises(checks.CheckFailed):
        checks.check_merged_weight(namespace["merged_weight"])
    import torch

    W, A, B = torch.zeros(2, 2), torch.ones(1, 2), torch.ones(2, 1)
    assert torch.equal(namespace["merged_weight"](W, A, B, 4.0, 1), merged_weight(W, A, B, 4.0, 1))


OTTER_CASE = """
>>> from lora_scratch import checks
>>> checks.passes(checks.check_merged_weight, merged_weight)
True
"""


@pytest.mark.parametrize("strict", [False, True])
def test_the_otter_doctest_case_of_the_instructor_guide_passes_and_fails_as_the_checker_says(monkeypatch, strict):
    """Otter's OK-format test cases are doctests: the case must print nothing but `True`, for a right answer only."""
    import doctest

    if strict:
        monkeypatch.setenv("LORA_SCRATCH_CHECKS", "strict")
    results = {}
    for label, fn in (("right", merged_weight), ("wrong", wrong), ("stub", stub)):
        test = doctest.DocTestParser().get_doctest(OTTER_CASE, {"merged_weight": fn}, label, None, 0)
        runner = doctest.DocTestRunner(verbose=False)
        runner.run(test, out=lambda _: None)
        results[label] = runner.summarize(verbose=False).failed == 0
    assert results == {"right": True, "wrong": False, "stub": False}


def test_every_checker_reports_under_the_name_its_check_cell_binds(capsys):
    """grade.py finds a verdict by the name in `name = checks.check_name(name)`; strict mode rebinds that name."""
    names = [n.removeprefix("check_") for n in checks.__all__ if n.startswith("check_")]
    assert len(names) == 47
    for name in names:
        getattr(checks, f"check_{name}")(stub)
        assert checks.verdicts()[-1] == {**checks.verdicts()[-1], "exercise": name, "status": "todo"}
