"""Where the shipped data lives: the DAVIS sample and the trained models.

One lookup for every way simwidgets is installed.  A wheel (``pip install simwidgets``, a
git URL on Colab) carries the repository's ``data/`` folder inside the package as
``simwidgets/_shipped`` (see ``pyproject.toml``); a checkout or an editable install reads
``data/`` beside the package.  Nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

from .errors import BadInputError

__all__ = ["data_root", "shipped_file"]

_PACKAGE = Path(__file__).resolve().parent


def _candidates() -> list[Path]:
    installed = _PACKAGE / "_shipped"
    checkout = _PACKAGE.parent / "data"
    # the checkout's data/ counts only beside this project's pyproject.toml, never a stray
    # "data" folder next to an installed package in site-packages
    in_checkout = (_PACKAGE.parent / "pyproject.toml").is_file()
    return [installed] + ([checkout] if in_checkout else [])


def data_root() -> Path:
    """The folder holding ``davis/`` (the sample) and ``models/`` (the shipped models)."""
    for folder in _candidates():
        if folder.is_dir():
            return folder
    places = " or ".join(str(p) for p in _candidates())
    raise BadInputError(f"simwidgets' shipped data is missing (looked in {places}): reinstall simwidgets")


def shipped_file(*parts: str) -> Path:
    """The path of a shipped file, e.g. ``shipped_file("models", "default.pt")``; it may not
    exist (callers say what is missing in their own words)."""
    try:
        return data_root().joinpath(*parts)
    except BadInputError:
        return _candidates()[0].joinpath(*parts)
