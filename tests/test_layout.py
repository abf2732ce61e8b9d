"""Tests for the package layout: one direction of flow, from the models up to the commands.

models -> datasets -> rundir (what every stage shares about a run) -> training
-> quantization -> export -> report -> job (configuration, stage runner) ->
the commands (train.py, experiments, benchmarks, tools). A package imports only
the ones before it, function-level imports included, and nothing imports a
command. `resnet_keras` needs only Keras and numpy; the configuration's closed
sets load no TensorFlow.
"""

import ast
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYERS = ("resnet_keras", "datasets", "rundir", "training", "quantization", "export", "report",
          "job")
COMMANDS = ("train", "experiments", "benchmarks", "tools")


def _first_party_imports(path):
    """(line, top-level package) of every first-party import in a file, nested ones too."""
    with open(path) as f:
        tree = ast.parse(f.read(), filename=path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name.split(".")[0]) for name in names
                  if name.split(".")[0] in LAYERS + COMMANDS]
    return found


def _sources():
    """{package: its .py files}, for the layers and the commands."""
    sources = {"train": [os.path.join(ROOT, "train.py")]}
    for package in LAYERS + COMMANDS[1:]:
        folder = os.path.join(ROOT, package)
        sources[package] = [os.path.join(dirpath, name)
                            for dirpath, _, names in os.walk(folder)
                            for name in sorted(names) if name.endswith(".py")]
    return sources


def test_every_package_is_on_the_map():
    top = {name for name in os.listdir(ROOT)
           if os.path.isfile(os.path.join(ROOT, name, "__init__.py"))} - {"tests"}
    assert top == set(LAYERS) | set(COMMANDS[1:])
    # Their subpackages too: setuptools installs only the packages listed.
    packages = {os.path.relpath(dirpath, ROOT).replace(os.sep, ".")
                for package in top for dirpath, _, names in os.walk(os.path.join(ROOT, package))
                if "__init__.py" in names}
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        pyproject = f.read()
    listed = pyproject.split("packages = [", 1)[1].split("]", 1)[0]
    assert sorted(p.strip().strip('"') for p in listed.replace("\n", "").split(",")
                  if p.strip()) == sorted(packages)


@pytest.mark.parametrize("package", LAYERS + COMMANDS)
def test_a_package_imports_only_the_ones_before_it(package):
    rank = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for path in _sources()[package]:
        for line, imported in _first_party_imports(path):
            if imported == package:
                continue
            if imported in COMMANDS or rank[imported] >= rank.get(package, len(LAYERS)):
                wrong.append(f"{os.path.relpath(path, ROOT)}:{line} imports {imported}")
    assert wrong == [], f"{package} may import only {', '.join(LAYERS[:rank.get(package)])}"


def test_the_checker_finds_an_import_that_runs_back_up(tmp_path):
    source = tmp_path / "bad.py"
    source.write_text("import os\n\ndef f():\n    from report import render\n"
                      "    import job.config, numpy\n")
    assert _first_party_imports(str(source)) == [(4, "report"), (5, "job")]


# TensorFlow and tf_keras import PIL, tarfile and pickle themselves, so what
# resnet_keras answers for is the modules it adds to theirs.
_IMPORTS = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # as resnet_keras.backend sets it
import tensorflow, tf_keras
before = set(sys.modules)
import resnet_keras
print(json.dumps({"added": sorted(set(sys.modules) - before), "all": sorted(sys.modules)}))
"""


def test_importing_resnet_keras_adds_only_its_own_modules():
    result = subprocess.run([sys.executable, "-c", _IMPORTS], cwd=ROOT, check=True,
                            capture_output=True, text=True)
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "resnet_keras.models" in modules["added"]
    assert [m for m in modules["added"] if m.split(".")[0] != "resnet_keras"] == []
    assert [m for m in modules["all"] if m.split(".")[0] in ("sklearn", "datasets")] == []


def test_the_configuration_and_the_command_line_load_no_tensorflow():
    # `train.py --help` and a bad key answer at once: TensorFlow takes seconds to load.
    code = ("import sys, train, job.config, export.variants; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tf_keras', 'keras')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                            capture_output=True, text=True)
    assert result.stdout.strip() == "[]"
