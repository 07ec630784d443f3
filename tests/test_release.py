"""The student release of this repository, as a class receives it (issue 12): self-contained, its own README,
every script and file a shipped text names, the capstone brief, a .gitignore, no solutions, links that resolve.
`make test` also executes every student notebook inside it (scripts/release.py --execute)."""
import subprocess
from pathlib import Path

import pytest

from scripts import release

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    return release.build(REPO, tmp_path_factory.mktemp("rel") / "student")


def test_the_readme_is_the_students_and_every_link_resolves(shipped):
    readme = (shipped / "README.md").read_text(encoding="utf-8")
    assert "make test" not in readme and "make lab" in readme and "make submit" in readme
    assert "{{NOTEBOOKS}}" not in readme
    for nb in (shipped / "notebooks").glob("*.ipynb"):
        assert f"(notebooks/{nb.name})" in readme  # the table lists every notebook
    assert release.broken_links(shipped) == []
    assert "[CAPSTONE.md](CAPSTONE.md)" in readme and (shipped / "CAPSTONE.md").is_file()


def test_every_script_a_shipped_text_names_is_shipped_and_no_instructor_tool(shipped):
    texts = [p.read_text(encoding="utf-8") for p in shipped.rglob("*") if p.suffix in (".md", ".ipynb")]
    named = release.mentioned_scripts(texts)
    assert {"ddp_lora", "measure_memory"} <= named  # notebook 11 runs one, the capstone brief cites the other
    shipped_scripts = {p.stem for p in (shipped / "scripts").glob("*.py")}
    assert named | {"submit"} <= shipped_scripts
    assert not shipped_scripts & release.INSTRUCTOR_SCRIPTS
    for script in shipped_scripts:  # and what each imports from scripts/
        assert release._imports(shipped / "scripts" / f"{script}.py") <= shipped_scripts


def test_no_solutions_and_a_gitignore_that_keeps_venv_out(shipped):
    assert not (shipped / "notebooks" / "solutions").exists()
    release.bn.verify_release(shipped)
    ignored = (shipped / ".gitignore").read_text().split()
    assert ".venv/" in ignored and "submission-*.zip" in ignored


def test_the_fallbacks_and_pins_ship_with_it(shipped):
    for name in ("constraints.txt", "Dockerfile", ".dockerignore", "binder/requirements.txt", "binder/postBuild",
                 ".devcontainer/devcontainer.json"):
        assert (shipped / name).is_file(), name
    assert (shipped / "binder" / "postBuild").stat().st_mode & 0o111  # still executable
    assert '-c constraints.txt -e ".[lab]"' in (shipped / "Makefile").read_text()  # the learner install, pinned


def test_the_release_makefile_knows_its_targets(shipped):
    targets = (("lab", "jupyter lab"), ("submit", "scripts/submit.py"), ("capstone", "lora_scratch.capstone"),
               ("doctor", "lora_scratch.doctor"), ("kernel", "ipykernel install"))
    for target, expect in targets:
        dry = subprocess.run(["make", "-n", target, "NAME=Ada"], cwd=shipped, capture_output=True, text=True)
        assert dry.returncode == 0 and expect in dry.stdout, dry.stderr


def test_a_shipped_text_naming_an_instructor_tool_fails_the_build(tmp_path, monkeypatch):
    monkeypatch.setattr(release, "student_readme", lambda root, nbs: "see scripts/grade.py\n")
    with pytest.raises(SystemExit, match="instructor tool"):
        release.build(REPO, tmp_path / "r")


def test_a_link_to_a_missing_file_is_reported(tmp_path):
    (tmp_path / "README.md").write_text("[ok](README.md) [web](https://example.org) [gone](docs/missing.md)\n")
    assert release.broken_links(tmp_path) == ["README.md: docs/missing.md"]
