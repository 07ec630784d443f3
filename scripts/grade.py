"""Grade a class from the learners' own checkers: one CSV row per student x exercise.

    python scripts/grade.py SUBMISSIONS --out grades.csv        # or: make grade SUBMISSIONS=dir
    python scripts/grade.py SUBMISSIONS --out grades.csv --notebooks 03 04 05 --timeout 300

SUBMISSIONS holds one entry per student: a folder, or a zip made by `make submit` (submission-<name>.zip, whose
manifest gives the name). Anywhere inside it, any course notebook NN_name.ipynb is graded, and a capstone
adapter folder (milton_adapter/, or any folder holding adapter_config.json) is checked against the capstone's
measurable rubric items (lora_scratch.capstone).

Each notebook runs top to bottom in a fresh kernel, in a working copy of its own (the submission itself is never
changed), with a time limit, under the grading sandbox (scripts/grading_sandbox: nothing may be written outside
the working copy). Every check cell reports its verdict as data (LORA_SCRATCH_VERDICTS; lora_scratch/checks).
Columns: student, notebook, exercise, status, message; status is
  pass   the checker accepted the learner's function;
  fail   it did not (the message is the hint the learner saw);
  todo   the exercise is still the stub (or, with --notebooks, the notebook was not handed in);
  error  no verdict: the notebook timed out, its kernel died, or the check cell itself raised (message: why).
A timeout or a crash gives error rows; it never stops the run. The time per student is printed at the end and
written next to the CSV (<out>.times.csv), with the sandbox that was in force.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = Path(__file__).resolve().parent / "grading_sandbox"
NOTEBOOK = re.compile(r"^(\d\d)_\w+\.ipynb$")
CHECK_CALL = re.compile(r"checks\.check_(\w+)\(")
COLUMNS = ("student", "notebook", "exercise", "status", "message")
MAX_UNZIPPED = 200_000_000  # a submission is a few MB; refuse archives that expand beyond this


@dataclass
class Submission:
    student: str
    folder: Path
    notebooks: dict[str, Path] = field(default_factory=dict)  # course notebook file name -> the student's copy
    adapter: Path | None = None


def course_exercises(course: Path) -> dict[str, list[str]]:
    """Notebook file name -> its exercises in order, read from the check cells of the student notebooks."""
    import nbformat

    result = {}
    for path in sorted((course / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        names: list[str] = []
        for cell in nb.cells:
            if cell.cell_type == "code":
                names += [n for n in CHECK_CALL.findall(cell.source) if n not in names]
        result[path.name] = names
    return result


def _safe_extract(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as z:
        total = 0
        for info in z.infolist():
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise ValueError(f"{archive.name}: {info.filename!r} would unpack outside its folder")
            total += info.file_size
            if total > MAX_UNZIPPED:
                raise ValueError(f"{archive.name} expands to more than {MAX_UNZIPPED / 1e6:.0f} MB")
        z.extractall(dest)


def find_submissions(root: Path, scratch: Path, course_names: set[str]) -> tuple[list[Submission], list[str]]:
    """One Submission per folder or zip under `root`, and a line for every entry that could not be read."""
    found, problems = [], []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".zip":
            folder = scratch / "unzipped" / entry.stem
            folder.mkdir(parents=True)
            try:
                _safe_extract(entry, folder)
            except (ValueError, zipfile.BadZipFile) as e:
                problems.append(f"{entry.name}: skipped, {e}")
                continue
            manifest = folder / "manifest.json"
            name = json.loads(manifest.read_text())["name"] if manifest.is_file() else entry.stem
            student = name if name else entry.stem.removeprefix("submission-")
        elif entry.is_dir():
            folder, student = entry, entry.name
        else:
            continue
        sub = Submission(student, folder)
        for path in sorted(folder.rglob("*.ipynb"), key=lambda p: (len(p.parts), str(p))):
            if path.name in course_names and ".ipynb_checkpoints" not in path.parts:
                sub.notebooks.setdefault(path.name, path)
        adapters = sorted((p.parent for p in folder.rglob("adapter_config.json")), key=lambda p: (
            p.name != "milton_adapter", len(p.parts)))
        sub.adapter = adapters[0] if adapters else None
        found.append(sub)
    return sorted(found, key=lambda s: s.student.casefold()), problems


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "student"


def sandbox_env(work: Path, verdicts: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LORA_SCRATCH_", "JUPYTER_", "IPYTHON"))}
    for name in ("home", "tmp", "mpl", "ipython", "runtime", "jupyter-data", "config"):
        (work / name).mkdir(exist_ok=True)
    env.update(LORA_SCRATCH_SANDBOX=str(work), LORA_SCRATCH_VERDICTS=str(verdicts), HOME=str(work / "home"),
               TMPDIR=str(work / "tmp"), MPLCONFIGDIR=str(work / "mpl"), IPYTHONDIR=str(work / "ipython"),
               JUPYTER_RUNTIME_DIR=str(work / "runtime"), JUPYTER_DATA_DIR=str(work / "jupyter-data"),
               JUPYTER_CONFIG_DIR=str(work / "config"), XDG_CACHE_HOME=str(work / "tmp"), MPLBACKEND="Agg",
               PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join([str(SANDBOX), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return env


def run_notebook(source: Path, work: Path, timeout: float) -> dict:
    """Execute a copy of `source` in `work` under the sandbox. Returns the verdicts and what happened."""
    work.mkdir(parents=True)
    notebook = work / source.name
    shutil.copyfile(source, notebook)
    verdicts = work / "verdicts.jsonl"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--run-one", str(notebook),
                             "--timeout", str(timeout)], cwd=work, env=sandbox_env(work, verdicts),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        outcome = "done" if proc.returncode == 0 else "crashed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and everything it started, the kernel included
        output, _ = proc.communicate()
        outcome = "timeout"
    rows = [json.loads(line) for line in verdicts.read_text(encoding="utf-8").splitlines()] if verdicts.exists() else []
    info_path = work / "run.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    return {"outcome": outcome, "verdicts": rows, "seconds": time.perf_counter() - start, "output": output[-2000:],
            "cell_errors": info.get("cell_errors", {}), "sandbox": info.get("sandbox", "unknown")}


def notebook_rows(student: str, name: str, exercises: list[str], run: dict, timeout: float) -> list[dict]:
    last = {v["exercise"]: v for v in run["verdicts"]}  # a check run twice: its last verdict counts
    rows = []
    for exercise in exercises:
        if exercise in last:
            v = last[exercise]
            rows.append({"status": v["status"], "message": v["message"]})
        elif exercise in run["cell_errors"]:
            rows.append({"status": "error", "message": f"the check cell raised {run['cell_errors'][exercise]} (a "
                                                       "cell above it may have failed, or the function is missing)"})
        elif run["outcome"] == "timeout":
            rows.append({"status": "error", "message": f"the notebook did not finish within {timeout:g} s; this "
                                                       "check was not reached"})
        elif run["outcome"] == "crashed":
            rows.append({"status": "error", "message": "the notebook could not be run to the end (its kernel "
                                                       f"died or could not start): {run['output'][-300:].strip()}"})
        else:
            rows.append({"status": "error", "message": "no verdict: the check cell was deleted or changed"})
    return [{"student": student, "notebook": name, "exercise": e, **r} for e, r in zip(exercises, rows)]


def capstone_rows(student: str, adapter: Path | None, base_losses: dict) -> list[dict]:
    from lora_scratch import capstone

    if adapter is None:
        return []
    return [{"student": student, "notebook": "capstone", "exercise": it.item, "status": it.status,
             "message": it.message} for it in capstone.check(adapter, base_losses)]


def grade(submissions: Path, out: Path, course: Path = ROOT, timeout: float = 600.0,
          only: list[str] | None = None, keep: Path | None = None) -> list[dict]:
    exercises = course_exercises(course)
    if only:
        exercises = {n: e for n, e in exercises.items() if n[:2] in only}
    scratch = Path(tempfile.mkdtemp(prefix="grade-")) if keep is None else keep
    scratch.mkdir(parents=True, exist_ok=True)
    subs, problems = find_submissions(submissions, scratch, set(exercises))
    for line in problems:
        print(line, file=sys.stderr)
    rows, times, base_losses = [], [], None
    for sub in subs:
        start, sandbox = time.perf_counter(), set()
        for name, names in exercises.items():
            if name not in sub.notebooks:
                if only:
                    rows += [{"student": sub.student, "notebook": name, "exercise": e, "status": "todo",
                              "message": "this notebook was not handed in"} for e in names]
                continue
            work = scratch / "work" / _slug(sub.student) / name.removesuffix(".ipynb")
            run = run_notebook(sub.notebooks[name], work, timeout)
            sandbox.add(run["sandbox"])
            rows += notebook_rows(sub.student, name, names, run, timeout)
            print(f"  {sub.student}: {name} {run['outcome']} in {run['seconds']:.0f} s", flush=True)
        if sub.adapter is not None:
            if base_losses is None:
                from lora_scratch.capstone import held_out
                from lora_scratch.train import load_base

                base_losses = held_out(load_base().eval())
            rows += capstone_rows(sub.student, sub.adapter, base_losses)
        times.append({"student": sub.student, "notebooks": len(sub.notebooks), "capstone": sub.adapter is not None,
                      "seconds": round(time.perf_counter() - start, 1), "sandbox": "/".join(sorted(sandbox)) or "-"})
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    times_path = out.with_suffix(".times.csv")
    with times_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=("student", "notebooks", "capstone", "seconds", "sandbox"))
        writer.writeheader()
        writer.writerows(times)
    for t in times:
        print(f"{t['student']:24s} {t['notebooks']:2d} notebooks{' + capstone' if t['capstone'] else '':12s} "
              f"{t['seconds']:7.1f} s   sandbox: {t['sandbox']}")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("pass", "fail", "todo", "error")}
    print(f"{len(rows)} rows in {out} ({', '.join(f'{v} {k}' for k, v in counts.items())}); times in {times_path}")
    if keep is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def run_one(notebook: Path, timeout: float) -> int:
    """Inside the sandbox: execute the notebook; after every cell, run.json says which check cells raised (so a
    run killed at its time limit still tells), and executed.ipynb keeps the outputs for the instructor."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    errors: dict[str, str] = {}
    record = notebook.parent / "run.json"

    def write() -> None:
        record.write_text(json.dumps({"cell_errors": errors,
                                      "sandbox": os.environ.get("LORA_SCRATCH_SANDBOX_LEVEL", "none")}))

    def executed(cell, **_) -> None:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                for name in CHECK_CALL.findall(cell.source):
                    errors[name] = f"{output.get('ename')}: {output.get('evalue')}"[:300]
        write()

    write()
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}}, on_cell_executed=executed)
    try:
        client.execute()
    finally:
        nbformat.write(nb, notebook.with_name("executed.ipynb"))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("submissions", type=Path, nargs="?")
    p.add_argument("--out", type=Path, default=Path("grades.csv"))
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per notebook (default 600)")
    p.add_argument("--notebooks", nargs="+", metavar="NN", help="grade only these (missing ones become todo rows)")
    p.add_argument("--keep", type=Path, help="keep the working copies (executed notebooks) in this folder")
    p.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)  # the sandboxed runner (internal)
    args = p.parse_args(argv)
    if args.run_one:
        return run_one(args.run_one, args.timeout)
    if args.submissions is None or not args.submissions.is_dir():
        p.error("give the folder that holds one folder or submission zip per student")
    sys.path.insert(0, str(ROOT))
    grade(args.submissions, args.out, timeout=args.timeout, only=args.notebooks, keep=args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
