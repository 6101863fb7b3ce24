"""Loading DAVIS-layout sequences (the real sample in data/davis and folders written in
tmp_path) and the synthetic video generator."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from simwidgets.errors import BadInputError
from simwidgets.scribbles import Scribbles
from simwidgets.video import (
    LazyFrames,
    VideoSequence,
    list_sequences,
    load_davis_sequence,
    load_sample,
    read_mask,
    sample_root,
    synthetic_video,
)

SAMPLES = {"bear": ["001", "002"], "tennis": ["003"], "dog-agility": []}


# --------------------------------------------------------------------------- real sample

def test_sample_root_lists_the_shipped_sequences(davis_root):
    assert sample_root() == davis_root
    on_disk = sorted(p.name for p in (davis_root / "JPEGImages" / "480p").iterdir() if p.is_dir())
    assert list_sequences(davis_root) == on_disk
    assert set(SAMPLES) <= set(on_disk)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_real_sequence_shapes_dtypes_and_binary_masks(sample_sequences, davis_root, name):
    video = sample_sequences(name)
    frame_files = sorted((davis_root / "JPEGImages" / "480p" / name).glob("*.jpg"))
    mask_files = sorted((davis_root / "Annotations" / "480p" / name).glob("*.png"))
    n = len(frame_files)
    assert n == len(mask_files) > 0
    with Image.open(frame_files[0]) as first:
        width, height = first.size
    assert video.name == name
    assert video.frames.shape == (n, height, width, 3)
    assert video.frames.dtype == np.uint8
    assert video.masks.shape == (n, height, width)
    assert np.issubdtype(video.masks.dtype, np.integer)
    assert video.n_frames == n and video.size == (height, width)
    # DAVIS 2016 masks are binary 0/255 on disk; foreground becomes object 1
    assert set(np.unique(video.masks).tolist()) == {0, 1}
    assert video.object_ids == [1]
    for frame_idx in (0, n // 2, n - 1):
        raw = np.asarray(Image.open(mask_files[frame_idx]))
        assert set(np.unique(raw).tolist()) <= {0, 255}
        np.testing.assert_array_equal(video.masks[frame_idx], (raw > 0).astype(int))
        decoded = np.asarray(Image.open(frame_files[frame_idx]).convert("RGB"))
        np.testing.assert_array_equal(video.frames[frame_idx], decoded)
    # every annotated frame of these sequences shows the object
    assert (video.masks.reshape(n, -1).max(axis=1) == 1).all()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_real_sequence_scribbles_attached(sample_sequences, davis_root, name):
    video = sample_sequences(name)
    assert sorted(video.scribbles) == SAMPLES[name]
    for stem, scribbles in video.scribbles.items():
        assert isinstance(scribbles, Scribbles)
        assert scribbles.n_frames == video.n_frames
        assert scribbles.sequence == name
        assert len(scribbles) > 0
        assert scribbles == Scribbles.load(davis_root / "Scribbles" / name / f"{stem}.json")


def test_tennis_scribbles_mark_player_and_racket(tennis):
    # tennis/003 marks the player as object 1 and the racket as object 2
    assert tennis.scribbles["003"].object_ids == [1, 2]


def test_lazy_frames_equal_eager_frames(sample_sequences):
    eager = sample_sequences("dog-agility")
    lazy = load_sample("dog-agility", lazy=True)
    assert isinstance(lazy.frames, LazyFrames)
    n = eager.n_frames
    assert lazy.frames.shape == eager.frames.shape
    assert len(lazy.frames) == n and lazy.n_frames == n
    np.testing.assert_array_equal(lazy.masks, eager.masks)
    np.testing.assert_array_equal(lazy.frames[3], eager.frames[3])
    np.testing.assert_array_equal(lazy.frames[-1], eager.frames[-1])
    np.testing.assert_array_equal(lazy.frames[np.int64(5)], eager.frames[5])
    np.testing.assert_array_equal(lazy.frames[2:9:3], eager.frames[2:9:3])
    np.testing.assert_array_equal(lazy.frames[[0, n - 1, 4]], eager.frames[[0, n - 1, 4]])
    np.testing.assert_array_equal(np.asarray(lazy.frames), eager.frames)
    for frame_idx, frame in enumerate(lazy.frames):
        np.testing.assert_array_equal(frame, eager.frames[frame_idx])
    with pytest.raises(IndexError, match="outside the video"):
        lazy.frames[n]


def test_lazy_frames_cache_stays_bounded(davis_root):
    paths = sorted((davis_root / "JPEGImages" / "480p" / "dog-agility").glob("*.jpg"))
    frames = LazyFrames(paths, cache_size=3)
    for frame_idx in range(8):
        frames[frame_idx]
    assert len(frames._cache) <= 3
    # a frame decoded again after eviction is identical
    np.testing.assert_array_equal(frames[0], np.asarray(Image.open(paths[0]).convert("RGB")))


# --------------------------------------------------------------------------- folders in tmp_path

def test_indexed_multi_object_masks_keep_their_ids(tmp_path, write_davis):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(3, 24, 32, 3), dtype=np.uint8)
    masks = np.zeros((3, 24, 32), dtype=np.int64)
    masks[:, 2:10, 3:12] = 1
    masks[:, 12:20, 5:15] = 2
    masks[1:, 5:15, 20:30] = 7  # a non-contiguous id, absent on frame 0
    root = write_davis(tmp_path, "multi", frames, masks)
    raw = read_mask(root / "Annotations" / "480p" / "multi" / "00001.png")
    np.testing.assert_array_equal(raw, masks[1])
    video = load_davis_sequence(root, "multi")
    np.testing.assert_array_equal(video.masks, masks)
    assert video.object_ids == [1, 2, 7]
    # PNG frames are lossless: they come back bit-exact
    np.testing.assert_array_equal(video.frames, frames)
    assert video.scribbles == {}


def test_indexed_mask_with_only_id_1_stays_object_1(tmp_path, write_davis):
    frames = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    masks = np.zeros((2, 16, 16), dtype=np.int64)
    masks[:, 4:8, 4:8] = 1
    video = load_davis_sequence(write_davis(tmp_path, "one", frames, masks), "one")
    np.testing.assert_array_equal(video.masks, masks)


def test_rgb_mask_export_is_read_as_binary(tmp_path, write_davis):
    frames = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    root = write_davis(tmp_path, "rgb", frames)
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[3:9, 2:7] = (200, 30, 10)
    mask_dir = root / "Annotations" / "480p" / "rgb"
    mask_dir.mkdir(parents=True)
    Image.fromarray(rgb).save(mask_dir / "00000.png")
    video = load_davis_sequence(root, "rgb")
    np.testing.assert_array_equal(video.masks[0], (rgb.max(axis=2) > 0).astype(int))


def test_load_without_masks_and_with_scribbles(tmp_path, write_davis, davis_folder):
    root, original = davis_folder
    video = load_davis_sequence(root, "toy", load_masks=False)
    assert video.masks is None and video.object_ids == []
    scribbles = Scribbles(original.n_frames, "toy")
    scribbles.add_stroke(2, [[0.1, 0.2], [0.5, 0.5]], 3, start_time=1, end_time=2)
    scribbles.save(root / "Scribbles" / "toy" / "001.json")
    video = load_davis_sequence(root, "toy")
    assert video.scribbles == {"001": scribbles}
    np.testing.assert_array_equal(video.masks, original.masks)


def test_video_sequence_repr_names_the_video(synthetic):
    text = repr(synthetic)
    assert synthetic.name in text and "96x64" in text and "[1, 2, 3]" in text


# --------------------------------------------------------------------------- synthetic

def test_synthetic_video_shapes_and_types():
    video = synthetic_video(n_frames=5, n_objects=2, height=40, width=60, seed=4)
    assert video.frames.shape == (5, 40, 60, 3) and video.frames.dtype == np.uint8
    assert video.masks.shape == (5, 40, 60) and np.issubdtype(video.masks.dtype, np.integer)
    assert video.name == "synthetic-4"


def test_synthetic_video_is_deterministic_per_seed():
    a = synthetic_video(n_frames=4, n_objects=3, seed=11)
    b = synthetic_video(n_frames=4, n_objects=3, seed=11)
    c = synthetic_video(n_frames=4, n_objects=3, seed=12)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(a.masks, c.masks)


@pytest.mark.parametrize("n_objects", [0, 1, 2, 5])
def test_synthetic_video_has_n_objects_that_move(n_objects):
    video = synthetic_video(n_frames=10, n_objects=n_objects, seed=n_objects)
    assert video.object_ids == list(range(1, n_objects + 1))
    for k in video.object_ids:
        visible = (video.masks == k).reshape(video.n_frames, -1).any(axis=1)
        # occlusion by a nearer object may hide one now and then, not most of the time
        assert visible.mean() >= 0.5
        first, last = (np.argwhere(video.masks[t] == k).mean(axis=0) for t in np.flatnonzero(visible)[[0, -1]])
        assert np.abs(first - last).max() > 1.0, f"object {k} does not move"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_masks_are_exact(seed):
    """Colour edges coincide with mask edges: neighbours across a mask boundary differ far
    more than neighbours inside one region, and a mask shifted by one pixel loses that."""
    video = synthetic_video(n_frames=6, n_objects=3, seed=seed, noise=0.0)
    frames, masks = video.frames.astype(np.float64), video.masks

    def edge_contrast(labels):
        diff = np.abs(frames[:, :, 1:] - frames[:, :, :-1]).sum(axis=-1)
        across = labels[:, :, 1:] != labels[:, :, :-1]
        return diff[across].mean() / diff[~across].mean()

    exact = edge_contrast(masks)
    shifted = edge_contrast(np.roll(masks, 1, axis=2))
    assert exact > 4.0
    assert exact > 2.0 * shifted


def test_synthetic_objects_differ_from_their_surroundings(synthetic):
    frames, masks = synthetic.frames.astype(np.float64), synthetic.masks
    checked = 0
    for t in range(synthetic.n_frames):
        for k in synthetic.object_ids:
            inside = masks[t] == k
            ring = ndimage.binary_dilation(inside, iterations=3) & ~inside & (masks[t] == 0)
            if inside.sum() < 20 or ring.sum() < 20:
                continue
            gap = np.linalg.norm(frames[t][inside].mean(axis=0) - frames[t][ring].mean(axis=0))
            assert gap > 15.0, f"object {k} on frame {t} looks like the background (gap {gap:.1f})"
            checked += 1
    assert checked >= synthetic.n_frames


def test_video_sequence_validates_masks(synthetic):
    with pytest.raises(BadInputError, match="do not match the video"):
        VideoSequence("x", synthetic.frames, synthetic.masks[:, :-1])
    video = VideoSequence("x", synthetic.frames, synthetic.masks.astype(np.int64))
    assert video.masks.dtype == np.uint8  # one byte per pixel: ids fit the palette
    np.testing.assert_array_equal(video.masks, synthetic.masks)
    wide = synthetic.masks.astype(np.int64)
    wide[0, 0, 0] = 300  # a 16-bit label image keeps its ids
    assert VideoSequence("x", synthetic.frames, wide).masks.dtype == np.int64


def test_clip_keeps_frames_masks_and_scribbles_aligned(bear):
    clip = bear.clip(30, 50)
    assert clip.n_frames == 20
    assert np.array_equal(clip.frames[9], bear.frames[39])
    assert np.array_equal(clip.masks, bear.masks[30:50])
    official = bear.scribbles["001"]
    assert clip.scribbles["001"].annotated_frames == [f - 30 for f in official.annotated_frames]
    assert clip.scribbles["001"].frames[9] == official.frames[39]
    with pytest.raises(BadInputError, match="not inside"):
        bear.clip(50, 30)
