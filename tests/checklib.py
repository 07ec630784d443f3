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
