"""The set-up promises: one source of dependencies, the README's two commands, CI calls them."""
import ast
import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "safetensors"}


def test_pyproject_dependencies_are_the_allowed_ones():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[]", d)[0] for d in deps}
    assert names == ALLOWED
    assert "torch>=2.2" in deps


def test_environment_yml_is_a_thin_wrapper_around_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    conda = sorted(d.split("=")[0] for d in deps if isinstance(d, str))
    pip = [d for d in deps if isinstance(d, dict)]
    assert conda == ["pip", "python"], "conda packages beyond python and pip would be a second source"
    assert pip == [{"pip": ["-c constraints.txt", "-e .[lab]"]}]  # the learner's install, with the pins


def test_package_imports_only_allowed_third_party_modules():
    stdlib = set(__import__("sys").stdlib_module_names)
    for path in (ROOT / "lora_scratch").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                assert top in stdlib or top in ALLOWED or top == "lora_scratch", f"{path.name} imports {mod}"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
