"""The student release: a folder a class can use with nothing else, and the test that it works as shipped.

    python scripts/release.py DIR              # build it (make release: dist/lora-from-scratch-student)
    python scripts/release.py DIR --execute    # build it, check it, then run every student notebook inside it

What goes in:
- notebooks/    the student notebooks (exercises stubbed, no outputs), built from the masters;
- lora_scratch/ the package, data/ everything the notebooks load (the shipped adapters included);
- scripts/      every script that a shipped text names (`scripts/<name>.py` in a notebook, the README, the capstone
                brief or data/README.md), the scripts those import, and submit.py; never an instructor tool;
- README.md     the student README (docs/student/README.md, with the table of notebooks filled in),
                CAPSTONE.md (docs/CAPSTONE.md), a Makefile with `setup`, `lab`, `submit` and `capstone`,
                a .gitignore (a class repository must not commit .venv), pyproject.toml, environment.yml, LICENSE.
No solutions: verify_release refuses a release in which any file holds a solution marker.

--execute is what CI runs: it checks that every relative link of the shipped Markdown resolves inside the
release and that the notebooks import the release's own package (not the repository's), then runs every student
notebook under `pytest --nbval-lax` with the release as the working directory.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts import build_notebooks as bn  # noqa: E402

MARKER = "RELEASE_NOTE.md"  # marks a folder as a release we may rebuild
FILES = ("pyproject.toml", "constraints.txt", "environment.yml", "LICENSE", "Dockerfile", ".dockerignore",
         "binder/requirements.txt", "binder/postBuild", "binder/runtime.txt", ".devcontainer/devcontainer.json")
# Tools for whoever builds the course or grades it, never for a student (a shipped text naming one is an error)
INSTRUCTOR_SCRIPTS = frozenset({"build_notebooks", "execute_notebooks", "make_instructor_hints", "render_course",
                                "release", "grade", "bench_course"})
ALWAYS = ("submit",)
SCRIPT_MENTION = re.compile(r"scripts/(\w+)\.py")
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
GITIGNORE = """.venv/
__pycache__/
*.egg-info/
.ipynb_checkpoints/
submission-*.zip
"""
MAKEFILE = """# LoRA from Scratch, student edition.
#   make lab                       set up .venv (first time only) and open JupyterLab on the first notebook
#   make submit NAME="Your Name"   zip your notebooks (and milton_adapter/, if there is one) to hand in
#   make capstone                  check milton_adapter/ against the capstone's rubric (CAPSTONE.md)
#   make doctor                    check this computer (versions, memory, disk, data) without Jupyter
#   make kernel                    a Jupyter kernel named lora-scratch, for VS Code or another Jupyter
#   make interop                   add transformers and PEFT (about 200 MB), for notebook 13 only
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
LAB_FLAGS = $(if $(filter 0,$(shell id -u)),--allow-root,)
ADAPTER ?= milton_adapter

.PHONY: setup lab submit capstone doctor kernel interop
setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
\ttest -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
\t$(BIN)/python -m pip install --quiet --upgrade pip
\t$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[lab]"
\ttouch $(STAMP)

lab: setup
\t$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/00_start_here.ipynb

submit:
\t$(PYTHON) scripts/submit.py --name "$(NAME)" --adapter "$(ADAPTER)"

capstone: setup
\t$(BIN)/python -m lora_scratch.capstone $(ADAPTER)

doctor: setup
\t$(BIN)/python -m lora_scratch.doctor

kernel: setup
\t$(BIN)/python -m ipykernel install --user --name lora-scratch --display-name "LoRA from Scratch (.venv)"

interop: setup
\t$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[lab,interop]"
"""
NOTE = """# Student release

This folder is the student edition of "LoRA from Scratch", built by `make release`. It holds the exercise
notebooks with the solutions removed, the `lora_scratch` package, the data and the scripts the notebooks name.
Start with README.md.
"""


def mentioned_scripts(texts: list[str]) -> set[str]:
    return {m for text in texts for m in SCRIPT_MENTION.findall(text)}


def _imports(path: Path) -> set[str]:
    """The scripts a script imports (`from scripts.x import ...`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.module.split(".")[1] for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scripts.")}


def script_closure(root: Path, names: set[str]) -> set[str]:
    todo, done = set(names), set()
    while todo:
        name = todo.pop()
        path = root / "scripts" / f"{name}.py"
        if not path.is_file():
            raise SystemExit(f"a shipped text names scripts/{name}.py, which does not exist: fix the text or the name")
        done.add(name)
        todo |= _imports(path) - done
    return done


def student_readme(root: Path, notebooks: dict[str, str]) -> str:
    """docs/student/README.md with {{NOTEBOOKS}} replaced by one line per notebook (its file and its title)."""
    template = root / "docs" / "student" / "README.md"
    text = template.read_text(encoding="utf-8") if template.is_file() else "# LoRA from Scratch\n\n{{NOTEBOOKS}}\n"
    lines = []
    for name, source in notebooks.items():
        nb = nbformat.reads(source, as_version=4)
        first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
        title = first.splitlines()[0].lstrip("# ").strip() if first else name
        lines.append(f"| [`{name}`](notebooks/{name}) | {title} |")
    table = "| notebook | title |\n|---|---|\n" + "\n".join(lines)
    return text.replace("{{NOTEBOOKS}}", table)


def build(root: Path, dest: Path) -> Path:
    """Write the release to `dest` (an empty folder, or an earlier release, which is replaced)."""
    students = bn.expected_students(root)
    _prepare(dest, root)
    (dest / "notebooks").mkdir()
    for name, text in students.items():
        (dest / "notebooks" / name).write_text(text, encoding="utf-8", newline="\n")
    package = root / "lora_scratch"
    for source in sorted(package.rglob("*.py")) if package.is_dir() else []:
        target = dest / source.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    if (root / "data").is_dir():
        shutil.copytree(root / "data", dest / "data", ignore=shutil.ignore_patterns("__pycache__"))
    for name in FILES:
        if (root / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, dest / name)
    readme = student_readme(root, students)
    (dest / "README.md").write_text(readme, encoding="utf-8", newline="\n")
    capstone = root / "docs" / "CAPSTONE.md"
    if capstone.is_file():
        shutil.copy2(capstone, dest / "CAPSTONE.md")
    texts = [readme, *students.values(), *(p.read_text(encoding="utf-8") for p in
                                           (dest / "CAPSTONE.md", dest / "data" / "README.md") if p.is_file())]
    wanted = mentioned_scripts(texts)
    if wanted & INSTRUCTOR_SCRIPTS:
        raise SystemExit(f"a shipped text names an instructor tool: {sorted(wanted & INSTRUCTOR_SCRIPTS)}; students "
                         "do not get it, so say it differently")
    wanted |= {name for name in ALWAYS if (root / "scripts" / f"{name}.py").is_file()}
    if wanted:
        (dest / "scripts").mkdir()
        for name in sorted(script_closure(root, wanted)):
            shutil.copy2(root / "scripts" / f"{name}.py", dest / "scripts" / f"{name}.py")
    (dest / "Makefile").write_text(MAKEFILE, encoding="utf-8", newline="\n")
    (dest / ".gitignore").write_text(GITIGNORE, encoding="utf-8", newline="\n")
    (dest / MARKER).write_text(NOTE, encoding="utf-8", newline="\n")
    bn.verify_release(dest)
    return dest


def _prepare(dest: Path, root: Path) -> None:
    dest, root = dest.resolve(), root.resolve()
    if dest == root or dest in root.parents:
        raise SystemExit(f"refusing to build a release into {dest}: it contains the repository")
    if dest.exists() and any(dest.iterdir()):
        if not (dest / MARKER).exists():
            raise SystemExit(f"refusing to overwrite {dest}: not empty and not an earlier release")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)


def broken_links(dest: Path) -> list[str]:
    """Every relative link of the release's Markdown files whose target is not in the release."""
    problems = []
    for md in sorted(dest.rglob("*.md")):
        if ".venv" in md.parts:
            continue
        for target in MD_LINK.findall(md.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor on the same page
            path = (md.parent / target.split("#", 1)[0]).resolve()
            if not path.exists() or dest.resolve() not in (path, *path.parents):
                problems.append(f"{md.relative_to(dest)}: {target}")
    return problems


def release_env(dest: Path) -> dict[str, str]:
    """The environment in which the release's own package and data are the ones imported."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(dest.resolve()), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("LORA_SCRATCH_DATA", None)
    return env


def execute(dest: Path) -> int:
    """Links, the package actually imported, then every student notebook under nbval-lax inside the release."""
    dest = dest.resolve()
    problems = broken_links(dest)
    if problems:
        print("broken links in the release:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    env = release_env(dest)
    where = subprocess.run([sys.executable, "-c", "import lora_scratch, lora_scratch.data as d; "
                            "print(lora_scratch.__file__); print(d.data_dir())"],
                           cwd=dest / "notebooks", env=env, capture_output=True, text=True, check=True).stdout.split()
    if not all(Path(p).resolve().is_relative_to(dest.resolve()) for p in where):
        print(f"the notebooks would import {where[0]} and read {where[1]}, not the release's own", file=sys.stderr)
        return 1
    print(f"release links resolve; the notebooks import {where[0]}")
    notebooks = sorted(str(p.relative_to(dest)) for p in (dest / "notebooks").glob(bn.NOTEBOOK_GLOB))
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
               "-q", "--rootdir", str(dest), *notebooks]
    return subprocess.run(command, cwd=dest, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dest", type=Path)
    p.add_argument("--root", type=Path, default=ROOT)
    p.add_argument("--execute", action="store_true", help="then check it and run every student notebook inside")
    args = p.parse_args(argv)
    dest = build(args.root, args.dest)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"Release written to {dest}: {len(bn.masters(args.root))} notebooks, no solutions, {size / 1e6:.1f} MB.")
    return execute(dest) if args.execute else 0


if __name__ == "__main__":
    sys.exit(main())
