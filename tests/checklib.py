"""Shared assertions for checker tests: the reference passes, the stub gives ⏳, a mistake gets its hint."""
from lora_scratch import checks


def stub(*_args, **_kwargs):
    raise NotImplementedError("Exercise: write your code here")


def run(capsys, checker, fn):
    returned = checker(fn)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err, "a checker must never show a traceback"
    return returned, out.out


def assert_reference_passes(capsys, checker, reference):
    returned, out = run(capsys, checker, reference)
    assert out.startswith(checks.PASS), out
    assert returned is reference and "goes on with your function" in out


def assert_stub_is_todo(capsys, checker):
    returned, out = run(capsys, checker, stub)
    assert out.startswith(checks.TODO), out
    assert returned is not stub and "reference" in out


def assert_mistake_hint(capsys, checker, mistake, hint):
    returned, out = run(capsys, checker, mistake)
    assert out.startswith(checks.FAIL) and hint in out, out
    assert returned is not mistake


def cases(spec: dict) -> list:
    """[(checker, mistake, hint), ...] for pytest.mark.parametrize."""
    return [(c, m, h) for c, s in spec.items() for m, h in s["mistakes"]]


def generic_tests(spec: dict):
    """The three tests every checker gets, parametrized over a notebook's CASES:
    `test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)`."""
    import pytest

    checkers = list(spec)
    ids = [c.__name__ for c in checkers]

    @pytest.mark.parametrize("checker", checkers, ids=ids)
    def test_reference_passes(capsys, checker):
        assert_reference_passes(capsys, checker, spec[checker]["reference"])

    @pytest.mark.parametrize("checker", checkers, ids=ids)
    def test_stub_is_not_done_yet(capsys, checker):
        assert_stub_is_todo(capsys, checker)

    @pytest.mark.parametrize("checker, mistake, hint", cases(spec))
    def test_typical_mistake_gets_its_hint(capsys, checker, mistake, hint):
        assert_mistake_hint(capsys, checker, mistake, hint)

    return test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint
