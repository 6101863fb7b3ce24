"""Shared fixtures: the real DAVIS sample in data/davis (loaded once per session),
synthetic videos, and a factory that writes small DAVIS-layout folders in tmp_path.

Tests use only the repository's data/ folder and synthetic videos, never ../shared.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simwidgets.palette import save_indexed_png
from simwidgets.video import load_sample, synthetic_video

REPO_ROOT = Path(__file__).resolve().parent.parent
DAVIS_ROOT = REPO_ROOT / "data" / "davis"
#: the real sequences shipped in data/davis, with the scribble files each one carries
SAMPLE_SEQUENCES = {"bear": ["001", "002"], "tennis": ["003"], "dog-agility": []}


@pytest.fixture(scope="session")
def davis_root() -> Path:
    assert (DAVIS_ROOT / "JPEGImages" / "480p").is_dir(), f"the shipped sample is missing: {DAVIS_ROOT}"
    return DAVIS_ROOT


@pytest.fixture(scope="session")
def sample_sequences(davis_root):
    """Factory with a per-session cache: ``sample_sequences("bear")`` loads bear once."""
    cache = {}

    def get(name: str):
        if name not in cache:
            cache[name] = load_sample(name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def bear(sample_sequences):
    return sample_sequences("bear")


@pytest.fixture(scope="session")
def tennis(sample_sequences):
    return sample_sequences("tennis")


@pytest.fixture(scope="session")
def synthetic():
    """A small 3-object synthetic video (fixed seed)."""
    return synthetic_video(n_frames=8, n_objects=3, height=64, width=96, seed=0)


def write_davis_folder(
    root: Path,
    name: str,
    frames: np.ndarray,
    masks: np.ndarray | None = None,
    scribbles: dict | None = None,
    frame_format: str = "png",
) -> Path:
    """Write a DAVIS-layout sequence under ``root``; masks as DAVIS indexed PNGs.

    ``frame_format="png"`` keeps frames lossless, so loaded frames can be compared exactly.
    ``scribbles`` maps a file stem ("001") to the JSON dict to write.
    """
    root = Path(root)
    frame_dir = root / "JPEGImages" / "480p" / name
    frame_dir.mkdir(parents=True, exist_ok=True)
    for frame_idx, frame in enumerate(frames):
        Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(frame_dir / f"{frame_idx:05d}.{frame_format}")
    if masks is not None:
        mask_dir = root / "Annotations" / "480p" / name
        for frame_idx, mask in enumerate(masks):
            save_indexed_png(mask, mask_dir / f"{frame_idx:05d}.png")
    for stem, data in (scribbles or {}).items():
        scribble_dir = root / "Scribbles" / name
        scribble_dir.mkdir(parents=True, exist_ok=True)
        (scribble_dir / f"{stem}.json").write_text(json.dumps(data))
    return root


@pytest.fixture
def davis_folder(tmp_path):
    """A 4-frame, 3-object synthetic sequence ``"toy"`` written as a DAVIS folder.

    Returns ``(root, video)`` where ``video`` is the in-memory original.
    """
    video = synthetic_video(n_frames=4, n_objects=3, height=40, width=56, seed=3)
    root = write_davis_folder(tmp_path / "davis", "toy", video.frames, video.masks)
    return root, video


@pytest.fixture(scope="session")
def write_davis():
    """The :func:`write_davis_folder` helper, as a fixture (tests do not import conftest)."""
    return write_davis_folder
