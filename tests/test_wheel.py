"""A pip-installed simwidgets works as a checkout does.

The wheel is built from this checkout and installed into a fresh virtual environment in a
folder outside the repository; there, the README's ten-line example (taken from README.md
itself, so the test follows the text) and the command line must run, reading the shipped
sample and the shipped default model from inside the installed package.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(args, cwd, timeout=900, env=None):
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Ten lines of Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(python, workdir)`` of a fresh venv holding only the wheel and its dependencies."""
    build = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
          "-w", str(build)], cwd=build)
    wheel = next(build.glob("simwidgets-*.whl"))
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # torch pinned as everywhere in this project (constraints.txt); the rest from the index
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c",
          str(REPO / "constraints.txt"), str(wheel)], cwd=build, timeout=1500)
    work = tmp_path_factory.mktemp("user")
    return python, work


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["MPLBACKEND"] = "Agg"
    return env


def test_the_installed_package_is_not_the_checkout(installed):
    python, work = installed
    done = _run([str(python), "-c", "import simwidgets, sys; print(simwidgets.__file__)"], cwd=work,
                env=_clean_env())
    location = Path(done.stdout.strip())
    assert REPO not in location.parents and "site-packages" in str(location)


def test_readme_example_runs_from_the_wheel(installed):
    python, work = installed
    script = work / "readme_example.py"
    script.write_text(_readme_example() + "\nfrom simwidgets.models import default_model_path\n"
                      "print('model', default_model_path())\n")
    done = _run([str(python), str(script)], cwd=work, env=_clean_env())
    jf = float(re.search(r"J&F = ([0-9.]+)", done.stdout).group(1))
    assert jf > 0.7, done.stdout  # the shipped model on bear from one official scribble
    model = done.stdout.split("model ")[-1].strip()
    assert "site-packages" in model and model.endswith("default.pt")


def test_cli_runs_from_the_wheel(installed):
    python, work = installed
    code = ("import simwidgets as sw, subprocess, sys; root = sw.sample_root(); "
            "sys.exit(subprocess.call([sys.executable, '-m', 'simwidgets', 'propagate', '--davis-root', str(root), "
            "'--sequence', 'dog-agility', '--first-mask', '--out', 'masks']))")
    done = _run([str(python), "-c", code], cwd=work, env=_clean_env())
    assert "25 frames" in done.stdout
    assert len(list((work / "masks").glob("*.png"))) == 25
    help_text = _run([str(python), "-m", "simwidgets", "--help"], cwd=work, env=_clean_env()).stdout
    assert "propagate" in help_text and "train" in help_text
