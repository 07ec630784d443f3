"""scripts/grade.py and scripts/submit.py on a sample class, the way an instructor receives it: zips made by
`make submit`, folders, a wrong answer, an unfinished notebook, a broken cell, a notebook that never ends, a
corrupt file, and a submission that tries to write outside its working copy."""
import csv
import importlib.util
import json
import os
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = "03_parameter_count.ipynb"  # four exercises, about 8 s to run


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _student_nb() -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / NB, as_version=4)


def _master_nb() -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / "solutions" / NB, as_version=4)


def _replace(nb, start: str, source: str):
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(start)]
    cell.source = source
    return nb


def _course_folder(path: Path, nb) -> Path:
    (path / "notebooks").mkdir(parents=True)
    nbformat.write(nb, path / "notebooks" / NB)
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("class")
    subs = tmp / "submissions"
    subs.mkdir()
    submit = _script("submit")
    # ada: every answer right, handed in with make submit (a zip with a manifest)
    ada = _course_folder(tmp / "ada_course", _master_nb())
    submit.write_zip(ada, "Ada Lovelace").rename(subs / "submission-ada-lovelace.zip")
    # bob: nothing done, a plain folder
    nbformat.write(_student_nb(), (subs / "bob").mkdir() or subs / "bob" / NB)
    # cy: linear_params forgets the bias; then a cell that vandalises files outside its copy
    victim = tmp / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    cy = _replace(_master_nb(), "def linear_params",
                  "def linear_params(d_in, d_out, bias=True):\n    return d_in * d_out\n")
    cy.cells.append(nbformat.v4.new_code_cell(
        "import shutil, pathlib\n"
        f"for act in (lambda: pathlib.Path({str(victim / 'keep.txt')!r}).write_text('gone'),\n"
        f"            lambda: shutil.rmtree({str(victim)!r}),\n"
        f"            lambda: pathlib.Path({str(tmp / 'planted.txt')!r}).write_text('x')):\n"
        "    try:\n        act()\n    except PermissionError as e:\n        print('refused:', e)\n"))
    nbformat.write(cy, (subs / "cy").mkdir() or subs / "cy" / NB)
    # dee: a syntax error in one exercise, and a loop that never ends before the last check
    dee = _replace(_master_nb(), "def lora_params", "def lora_params(d_in, d_out, r)\n    return 0\n")
    (last,) = [i for i, c in enumerate(dee.cells) if c.source.startswith("lora_budget = checks.check_lora_budget")]
    dee.cells.insert(last, nbformat.v4.new_code_cell("while True:\n    pass\n"))
    nbformat.write(dee, (subs / "dee").mkdir() or subs / "dee" / NB)
    # eve: a file that is not a notebook at all
    (subs / "eve").mkdir()
    (subs / "eve" / NB).write_text("{ not json")
    before = (subs / "cy" / NB).read_bytes()
    out = tmp / "grades.csv"
    _script("grade").grade(subs, out, timeout=60)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    return {"rows": rows, "tmp": tmp, "victim": victim, "out": out, "cy_before": before, "subs": subs}


def by(rows, student):
    return {r["exercise"]: (r["status"], r["message"]) for r in rows if r["student"] == student}


EXERCISES = ["linear_params", "lora_params", "gpt_params", "lora_budget"]


def test_one_row_per_student_and_exercise_with_the_columns_asked_for(graded):
    assert list(graded["rows"][0]) == ["student", "notebook", "exercise", "status", "message"]
    students = {r["student"] for r in graded["rows"]}
    assert students == {"Ada Lovelace", "bob", "cy", "dee", "eve"}  # the zip's manifest gives Ada's name
    for s in students:
        assert list(by(graded["rows"], s)) == EXERCISES


def test_statuses_follow_the_checkers(graded):
    rows = graded["rows"]
    assert {e: s for e, (s, _) in by(rows, "Ada Lovelace").items()} == dict.fromkeys(EXERCISES, "pass")
    assert {s for s, _ in by(rows, "bob").values()} == {"todo"}
    cy = by(rows, "cy")
    assert cy["linear_params"][0] == "fail" and "bias" in cy["linear_params"][1]  # the learner's own hint
    assert [cy[e][0] for e in EXERCISES[1:]] == ["pass"] * 3


def test_a_broken_cell_and_a_timeout_give_error_rows_and_the_run_goes_on(graded):
    dee = by(graded["rows"], "dee")
    assert dee["linear_params"][0] == "pass" and dee["gpt_params"][0] == "pass"
    assert dee["lora_params"][0] == "error" and "NameError" in dee["lora_params"][1]
    assert dee["lora_budget"][0] == "error" and "did not finish within 60 s" in dee["lora_budget"][1]
    eve = by(graded["rows"], "eve")
    assert {s for s, _ in eve.values()} == {"error"} and "could not be run" in eve["linear_params"][1]


def test_a_submission_cannot_write_outside_its_working_copy(graded):
    assert (graded["victim"] / "keep.txt").read_text() == "precious"
    assert not (graded["tmp"] / "planted.txt").exists()
    assert (graded["subs"] / "cy" / NB).read_bytes() == graded["cy_before"]  # the submission itself is untouched


def test_times_per_student_are_written(graded):
    times = list(csv.DictReader(graded["out"].with_suffix(".times.csv").open()))
    assert [t["student"] for t in times] == ["Ada Lovelace", "bob", "cy", "dee", "eve"]
    assert all(float(t["seconds"]) > 0 for t in times)
    assert {t["sandbox"] for t in times if t["student"] != "eve"} <= {"landlock+audit", "audit"}


def test_submit_zips_notebooks_adapter_and_manifest_and_changes_nothing(tmp_path, capsys):
    submit = _script("submit")
    course = _course_folder(tmp_path, _student_nb())
    (course / "milton_adapter").mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (course / "milton_adapter" / name).write_bytes(b"x" * 10)
    (course / "REPORT.md").write_text("# my report\n")
    snapshot = {p: p.read_bytes() for p in course.rglob("*") if p.is_file()}
    out = submit.write_zip(course, "Grace Hopper")
    assert out.name == "submission-grace-hopper.zip"
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # an ordinary file, not a private temporary
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
    assert names == {f"notebooks/{NB}", "REPORT.md", "milton_adapter/adapter_config.json",
                     "milton_adapter/adapter_model.safetensors", "manifest.json"}
    assert manifest["name"] == "Grace Hopper" and set(manifest["files"]) == names - {"manifest.json"}
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    submit.write_zip(course, "Grace Hopper")
    assert "replaced submission-grace-hopper.zip" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="NAME="):
        submit.write_zip(course, "  ")
