"""The masters work in nbgrader as they are (issue 12): nbgrader itself generates the assignment from a master and
autogrades three submissions, with the course's checkers as its tests (LORA_SCRATCH_CHECKS=strict)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = "03_parameter_count"  # four exercises, about 8 s per run
pytest.importorskip("nbgrader", reason="nbgrader is in the dev extra: pip install -e '.[dev]'")


def nbgrader(course: Path, *args: str, strict: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "LORA_SCRATCH_CHECKS": "strict"} if strict else dict(os.environ)
    env.pop("LORA_SCRATCH_VERDICTS", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # nbgrader runs alembic
    return subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force", f"--CourseDirectory.root={course}"],
                          cwd=course, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    course = tmp_path_factory.mktemp("nbgrader")
    (course / "source" / "ps1").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "solutions" / f"{NB}.ipynb", course / "source" / "ps1")
    done = nbgrader(course, "generate_assignment", "ps1")
    assert done.returncode == 0, done.stdout + done.stderr
    return course


def test_generate_assignment_stubs_every_answer_and_locks_every_check(course):
    released = nbformat.read(course / "release" / "ps1" / f"{NB}.ipynb", as_version=4)
    answers = [c for c in released.cells if c.metadata.get("nbgrader", {}).get("solution")]
    checks = [c for c in released.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(answers) == len(checks) == 4
    assert all("raise NotImplementedError" in c.source and "BEGIN SOLUTION" not in c.source for c in answers)
    assert all(c.metadata["nbgrader"]["locked"] and "checks.check_" in c.source for c in checks)
    assert sum(c.metadata["nbgrader"]["points"] for c in checks) == 4


def test_autograde_scores_the_course_checkers_verdicts(course):
    released = course / "release" / "ps1" / f"{NB}.ipynb"
    master = nbformat.read(ROOT / "notebooks" / "solutions" / f"{NB}.ipynb", as_version=4)
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in master.cells
                 if c.metadata.get("nbgrader", {}).get("solution")}

    def submit(student: str, answers: dict[str, str]) -> None:
        nb = nbformat.read(released, as_version=4)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                cell.source = answers[grade_id]
        folder = course / "submitted" / student / "ps1"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{NB}.ipynb")

    submit("good", solutions)
    submit("empty", {})
    submit("wrong", {**solutions, "linear_params_answer": "def linear_params(d_in, d_out, bias=True):\n"
                                                          "    return d_in * d_out\n"})
    done = nbgrader(course, "autograde", "ps1", strict=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: gb.find_submission_notebook(NB, "ps1", s).score for s in ("good", "empty", "wrong")}
        wrong = {g.name: g.score for g in gb.find_submission_notebook(NB, "ps1", "wrong").grades}
    assert scores == {"good": 4, "empty": 0, "wrong": 3}
    assert wrong["linear_params_check"] == 0 and wrong["lora_params_check"] == 1
