"""scripts/notebook_pictures.py: each README picture comes from the intended notebook cell,
and a re-executed or edited notebook that no longer matches is reported, not guessed."""
import base64
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("notebook_pictures", REPO / "scripts" / "notebook_pictures.py")
pictures = importlib.util.module_from_spec(spec)
sys.modules["notebook_pictures"] = pictures  # dataclasses look their module up there
spec.loader.exec_module(pictures)


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("name", [n for n, p in pictures.PICTURES.items() if p.marker])
def test_each_marker_names_one_code_cell(name):
    path = REPO / "notebooks" / f"{name}.ipynb"
    if not path.is_file():
        pytest.skip(f"{path.name} is not in this checkout")
    cells = json.loads(path.read_text())["cells"]
    index, cell = pictures.find_cell(cells, pictures.PICTURES[name], name)
    assert cell["cell_type"] == "code" and pictures.PICTURES[name].marker in "".join(cell["source"])


@pytest.mark.parametrize("name", ["00_quickstart", "03_similarity", "04_interactive_propagation", "05_davis_benchmark"])
def test_committed_notebooks_yield_a_light_jpeg(name):
    raw, where = pictures.source_picture(name, pictures.PICTURES[name])
    jpeg = pictures.encode(raw)
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.width <= pictures.MAX_WIDTH
    assert len(jpeg) <= pictures.MAX_BYTES and where.startswith(f"{name}.ipynb, cell ")


def test_a_tag_wins_over_the_marker_and_ambiguity_is_an_error():
    code = lambda src, tags=(): {"cell_type": "code", "source": [src], "metadata": {"tags": list(tags)}, "outputs": []}
    cells = [code("plot(a)"), code("plot(b)", ["readme-picture"]), code("plot(a)")]
    assert pictures.find_cell(cells, pictures.Pick("plot(b)"), "x")[0] == 1
    with pytest.raises(ValueError, match=r"in 2 code cells \(cells \[0, 1\]\)"):
        pictures.find_cell([cells[0], cells[2]], pictures.Pick("plot(a)"), "x")


def test_cell_images_and_output_choice(tmp_path, monkeypatch):
    red, blue = np.zeros((4, 6, 3), np.uint8), np.zeros((4, 6, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    outputs = [{"output_type": "display_data", "data": {"image/png": base64.b64encode(png_bytes(a)).decode(), "text/plain": "fig"}}
               for a in (red, blue)]
    nb = {"cells": [{"cell_type": "code", "source": ["show()"], "metadata": {}, "outputs": outputs}]}
    (tmp_path / "99_toy.ipynb").write_text(json.dumps(nb))
    monkeypatch.setattr(pictures, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(pictures, "REPO", tmp_path)
    raw, where = pictures.source_picture("99_toy", pictures.Pick("show()", output=-1))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(raw)))[..., :3], blue) and "image 2 of 2" in where
    nb["cells"][0]["outputs"] = []
    (tmp_path / "99_toy.ipynb").write_text(json.dumps(nb))
    with pytest.raises(pictures.Skip, match="no stored image"):
        pictures.source_picture("99_toy", pictures.Pick("show()"))


def test_a_large_noisy_picture_is_shrunk_under_the_limit():
    noise = np.random.default_rng(0).integers(0, 256, (1400, 2000, 3), dtype=np.uint8)
    jpeg = pictures.encode(png_bytes(noise))
    assert len(jpeg) <= pictures.MAX_BYTES
    assert Image.open(io.BytesIO(jpeg)).width <= pictures.MAX_WIDTH
