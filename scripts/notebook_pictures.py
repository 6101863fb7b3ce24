"""Refresh the README's notebook pictures, docs/images/nbNN.jpg, from the notebooks' stored outputs.

Run it after re-executing and saving notebooks (no notebook is executed here)::

    .venv/bin/python scripts/notebook_pictures.py            # every notebook
    .venv/bin/python scripts/notebook_pictures.py 03 05      # only these
    .venv/bin/python scripts/notebook_pictures.py --check    # say what would be taken, write nothing

Which picture is taken, per notebook (first rule that applies):

1. a code cell tagged ``readme-picture`` (cell metadata ``"tags": ["readme-picture"]``);
2. else the one code cell whose source contains the notebook's ``marker`` in ``PICTURES``
   below (a line of code, not a cell number, so inserting cells does not move the choice;
   0 or 2+ matching cells is an error);
3. ``output`` picks among that cell's images (0 = first, -1 = last);
4. a notebook whose picture cannot be stored (a widget) names a ``file`` instead.

A notebook that is missing, or saved without outputs, is reported and skipped (exit status 0;
``--strict`` makes it an error).  Each picture is re-encoded as JPEG, at most ``MAX_WIDTH``
pixels wide and under ``MAX_BYTES``, so the README stays light.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
IMAGES = REPO / "docs" / "images"
TAG = "readme-picture"
MAX_WIDTH = 900
MAX_BYTES = 150_000


@dataclass(frozen=True)
class Pick:
    marker: str | None = None  # a string found in exactly one code cell's source
    output: int = 0  # which of that cell's images
    file: str | None = None  # or a picture file in the repository (widgets store none)


PICTURES = {
    "00_quickstart": Pick("fig = viz.show_frames(video.frames, result.masks, frame_indices=picks)"),
    "01_scribble_widget": Pick(file="docs/images/widget.png"),
    "02_training": Pick("embeddings = {name: m.embed(frames)"),
    "03_similarity": Pick('explorer.scale_toggle.value = "stretch"'),
    "04_interactive_propagation": Pick('"round 2: after one correction"', output=-1),
    "05_davis_benchmark": Pick('ax.axvline(60, color="grey"'),
}


class Skip(Exception):
    """This notebook has no picture to take now (missing, or saved without outputs)."""


def cell_images(cell: dict) -> list[bytes]:
    """The PNG/JPEG images stored in a code cell's outputs, in order."""
    images = []
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        for mime in ("image/png", "image/jpeg"):
            if mime in data:
                payload = data[mime]
                images.append(base64.b64decode("".join(payload) if isinstance(payload, list) else payload))
                break
    return images


def find_cell(cells: list[dict], pick: Pick, name: str) -> tuple[int, dict]:
    """The tagged cell, else the one code cell containing the marker; raises ValueError otherwise."""
    tagged = [(i, c) for i, c in enumerate(cells) if TAG in c.get("metadata", {}).get("tags", [])]
    if len(tagged) > 1:
        raise ValueError(f"{name}: {len(tagged)} cells are tagged {TAG!r}; tag one")
    if tagged:
        return tagged[0]
    matches = [(i, c) for i, c in enumerate(cells)
               if c["cell_type"] == "code" and pick.marker in "".join(c["source"])]
    if len(matches) != 1:
        raise ValueError(
            f"{name}: the marker {pick.marker!r} is in {len(matches)} code cells (cells "
            f"{[i for i, _ in matches]}); it must be in exactly one: update PICTURES or tag a cell {TAG!r}"
        )
    return matches[0]


def source_picture(name: str, pick: Pick) -> tuple[bytes, str]:
    """``(image bytes, where it came from)`` for one notebook."""
    if pick.file is not None:
        path = REPO / pick.file
        if not path.is_file():
            raise Skip(f"{pick.file} does not exist")
        return path.read_bytes(), pick.file
    path = NOTEBOOKS / f"{name}.ipynb"
    if not path.is_file():
        raise Skip(f"{path.relative_to(REPO)} does not exist")
    index, cell = find_cell(json.loads(path.read_text())["cells"], pick, name)
    images = cell_images(cell)
    if not images:
        raise Skip(f"cell {index} of {path.name} has no stored image: execute the notebook and save it with outputs")
    if not -len(images) <= pick.output < len(images):
        raise ValueError(f"{name}: cell {index} has {len(images)} images; output={pick.output} is out of range")
    chosen = pick.output % len(images)
    return images[chosen], f"{path.name}, cell {index}, image {chosen + 1} of {len(images)}"


def encode(image_bytes: bytes) -> bytes:
    """RGB JPEG at most MAX_WIDTH wide and under MAX_BYTES (lower quality, then smaller, if needed)."""
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.LANCZOS)
    while True:
        for quality in (88, 80, 70, 60):
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=quality, optimize=True)
            if buffer.tell() <= MAX_BYTES:
                return buffer.getvalue()
        image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="notebook numbers (00..05) or names; default: all")
    parser.add_argument("--check", action="store_true", help="report what would be taken; write nothing")
    parser.add_argument("--strict", action="store_true", help="a skipped notebook is an error")
    args = parser.parse_args(argv)
    names = [n for n in PICTURES if not args.only or any(n == o or n.startswith(o + "_") for o in args.only)]
    unknown = [o for o in args.only if not any(n == o or n.startswith(o + "_") for n in PICTURES)]
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}; known: {', '.join(PICTURES)}")
    IMAGES.mkdir(parents=True, exist_ok=True)
    skipped = 0
    for name in names:
        target = IMAGES / f"nb{name[:2]}.jpg"
        try:
            raw, where = source_picture(name, PICTURES[name])
        except Skip as reason:
            skipped += 1
            print(f"skipped {target.relative_to(REPO)}: {reason}")
            continue
        jpeg = encode(raw)
        if not args.check:
            target.write_bytes(jpeg)
        size = Image.open(io.BytesIO(jpeg)).size
        verb = "would write" if args.check else "wrote"
        print(f"{verb} {target.relative_to(REPO)} ({size[0]}x{size[1]}, {len(jpeg) // 1024} KB) from {where}")
    return 1 if (skipped and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
