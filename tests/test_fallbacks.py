"""The zero-install fallbacks (issue 13): Binder (repo2docker), Docker and a devcontainer, checked statically —
no container can be built here (Docker Hub and download.pytorch.org are out of reach) — and the pins they use."""
import json
import shlex
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DOCKER_INSTRUCTIONS = {"FROM", "WORKDIR", "COPY", "RUN", "EXPOSE", "CMD", "ENV", "ARG", "USER", "LABEL"}


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line  # a pin, not a range or a file
            out[req.name.lower()] = spec.version
    return out


def test_constraints_pin_every_dependency_exactly_and_the_floors_admit_them():
    pinned = pins()
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"] + project["optional-dependencies"]["lab"]:
        req = Requirement(line)
        assert req.name.lower() in pinned, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pinned[req.name.lower()]), f"the pin of {req.name} breaks its floor {req}"


def test_binder_installs_the_pinned_cpu_torch_then_the_course():
    lines = [ln for ln in (ROOT / "binder/requirements.txt").read_text().splitlines() if ln and ln[0] != "#"]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    (torch,) = [Requirement(ln) for ln in lines if not ln.startswith("-")]
    assert torch.name == "torch" and str(torch.specifier) == f"=={pins()['torch']}"
    post = ROOT / "binder/postBuild"
    assert post.stat().st_mode & 0o111, "repo2docker runs postBuild only if it is executable"
    assert subprocess.run(["bash", "-n", str(post)]).returncode == 0
    assert '-c constraints.txt -e ".[lab]"' in post.read_text()
    assert (ROOT / "binder/runtime.txt").read_text().strip() == "python-3.11"


def test_the_dockerfile_is_well_formed_and_copies_what_exists():
    text = (ROOT / "Dockerfile").read_text()
    instructions = [ln.split(None, 1) for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert {i[0] for i in instructions} <= DOCKER_INSTRUCTIONS and instructions[0][0] == "FROM"
    for keyword, rest in instructions:
        if keyword == "COPY":
            *sources, _ = shlex.split(rest)
            assert all((ROOT / s).exists() for s in sources), rest
        if keyword == "CMD":
            assert json.loads(rest)[:2] == ["jupyter", "lab"] and "--allow-root" in rest  # the container runs as root
    assert f"torch=={pins()['torch']} --index-url https://download.pytorch.org/whl/cpu" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv/" in ignored and ".git/" in ignored  # a 6 GB .venv must not be sent to the daemon


def test_the_devcontainer_builds_from_the_dockerfile():
    config = json.loads((ROOT / ".devcontainer/devcontainer.json").read_text())
    assert (ROOT / ".devcontainer" / config["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
    assert 8888 in config["forwardPorts"]


def test_environment_yml_installs_the_learner_extra_with_the_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    (pip,) = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert pip["pip"] == ["-c constraints.txt", "-e .[lab]"]


def test_the_learner_install_resolves_against_the_registry():
    """pip resolves the pinned learner install (--dry-run: nothing is installed)."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "-c", "constraints.txt",
                           "-e", ".[lab]"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
