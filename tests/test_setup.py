"""The set-up promises: one source of dependencies, the README's two commands, CI calls them."""
import ast
import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "safetensors"}
INTEROP = {"transformers", "peft"}  # the optional extra, for interop.py only


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


def _imports(tree: ast.AST, inside_function: bool = False):
    """(top-level module name, whether the import is inside a function) for every absolute import."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import):
            yield from ((a.name.split(".")[0], inside_function) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split(".")[0], inside_function
        yield from _imports(node, inside_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef))


def test_package_imports_only_allowed_third_party_modules():
    """From scratch: torch and friends only. interop.py alone may import transformers and peft, and only inside its
    functions, so importing the package never needs them (the `interop` extra)."""
    stdlib = set(__import__("sys").stdlib_module_names)
    lazy = 0
    for path in (ROOT / "lora_scratch").glob("*.py"):
        for top, inside_function in _imports(ast.parse(path.read_text())):
            if top in INTEROP and path.name == "interop.py" and inside_function:
                lazy += 1
                continue
            assert top in stdlib or top in ALLOWED or top == "lora_scratch", f"{path.name} imports {top}"
    assert lazy, "interop.py's lazy imports were not found: the walk above would not see them"


def test_the_interop_extra_is_optional_part_of_dev_and_pinned():
    from packaging.requirements import Requirement

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    reqs = [Requirement(d) for d in extras["interop"]]
    assert {r.name for r in reqs} == INTEROP
    assert "lora-scratch[interop]" in extras["dev"]
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    assert all(r.specifier.contains(pins[r.name]) for r in reqs), "a pin in constraints.txt breaks a floor"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
