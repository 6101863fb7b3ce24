"""Long runs: a stopped run resumes exactly, and the same train command runs data-parallel
under torchrun (2 CPU processes, gloo) with one checkpoint that loads like any other."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from simwidgets.cli import main as cli_main
from simwidgets.errors import BadInputError
from simwidgets.models import load_checkpoint, load_model
from simwidgets.training import TrainConfig, VideoClip
from simwidgets.training.loop import Trainer, load_training_state, state_path_for
from simwidgets.video import synthetic_video

REPO = Path(__file__).resolve().parent.parent
SMALL = dict(arch="fcn-small", arch_options={"dim": 8, "width": 8}, weights=None, crop=32, batch_pairs=2,
             n_triplets=16, steps=6, val_every=3, seed=5)


@pytest.fixture(scope="module")
def clips():
    videos = [synthetic_video(n_frames=6, n_objects=2, height=40, width=56, seed=s) for s in range(3)]
    return [VideoClip.from_sequence(v) for v in videos]


def _same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_a_resumed_run_equals_an_uninterrupted_one(clips, tmp_path):
    config = TrainConfig(**SMALL)
    whole = Trainer(clips[:2], clips[2:], config, out=tmp_path / "whole.pt")
    whole.run(progress=False)
    whole_result = whole.finish()

    first = Trainer(clips[:2], clips[2:], config, out=tmp_path / "part.pt", checkpoint_every=2)
    first.run(progress=False, until=4)  # "killed" after step 4; its state was written at step 4
    state = state_path_for(tmp_path / "part.pt")
    assert state.name == "part.state.pt" and load_training_state(state)["step"] == 4
    del first
    second = Trainer(clips[:2], clips[2:], config, out=tmp_path / "part.pt", checkpoint_every=2)
    second.load_state(state)
    second.run(progress=False)
    resumed = second.finish()

    _same_state(whole_result.model.state_dict(), resumed.model.state_dict())
    assert [h["loss"] for h in whole_result.history] == [h["loss"] for h in resumed.history]
    scores = lambda result: [(v["step"], v["J&F"], v["per_sequence"]) for v in result.validation]  # noqa: E731
    assert scores(whole_result) == scores(resumed) and whole_result.best_step == resumed.best_step
    assert resumed.record["resumed_from"]["step"] == 4
    # the state file holds plain values and tensors: it loads with weights_only=True
    torch.load(state, weights_only=True)


def test_a_finished_runs_state_holds_its_last_weights_and_resumes_to_the_same_checkpoint(clips, tmp_path):
    """The state written when a run finishes holds the weights of its last step under
    "model" and the kept (best validation) weights under "best_state", like every state
    written along the way; before, "model" held the best weights beside step = the last
    step, so the last step's weights were lost.  Resuming it trains nothing and writes
    the same checkpoint."""
    config = TrainConfig(**{**SMALL, "val_every": 2, "lr": 0.05})  # its best step (2) is not its last
    done = Trainer(clips[:2], clips[2:], config, out=tmp_path / "done.pt", checkpoint_every=3)
    done.run(progress=False)
    result = done.finish()
    last = Trainer(clips[:2], clips[2:], config)
    last.run(progress=False)  # the same run, not finished: its model holds the last step's weights
    state = load_training_state(state_path_for(tmp_path / "done.pt"))
    assert state["step"] == config.steps and state["best_step"] == result.best_step < config.steps
    _same_state(state["model"], last.model.state_dict())
    _same_state(state["best_state"], result.model.state_dict())
    again = Trainer(clips[:2], clips[2:], config, out=tmp_path / "again.pt", checkpoint_every=3)
    again.load_state(state_path_for(tmp_path / "done.pt"))
    again.run(progress=False)
    _same_state(again.finish().model.state_dict(), result.model.state_dict())
    assert again.step == config.steps and len(again.history) == len(result.history)


def test_resume_refuses_another_configuration(clips, tmp_path):
    config = TrainConfig(**SMALL)
    trainer = Trainer(clips[:2], clips[2:], config, out=tmp_path / "m.pt", checkpoint_every=2)
    trainer.run(progress=False, until=2)
    other = Trainer(clips[:2], clips[2:], TrainConfig(**{**SMALL, "lr": 1e-3}), out=tmp_path / "n.pt")
    with pytest.raises(BadInputError, match=r"a run of another config: lr differ"):
        other.load_state(state_path_for(tmp_path / "m.pt"))
    with pytest.raises(BadInputError, match=r"that is a model checkpoint; resume from the \.state\.pt file"):
        trainer.save_checkpoint(final=False)
        other.load_state(tmp_path / "m.pt")


def test_a_state_written_before_an_option_existed_resumes(clips, tmp_path):
    """Options added later (train_blocks, backbone_lr_scale) read as their defaults in an
    older state: a long run started by the previous version continues."""
    config = TrainConfig(**SMALL)
    trainer = Trainer(clips[:2], clips[2:], config, out=tmp_path / "m.pt", checkpoint_every=2)
    trainer.run(progress=False, until=2)
    path = state_path_for(tmp_path / "m.pt")
    state = torch.load(path, weights_only=True)
    for name in ("train_blocks", "backbone_lr_scale"):
        del state["config"][name]
    torch.save(state, path)
    later = Trainer(clips[:2], clips[2:], config, out=tmp_path / "m.pt")
    later.load_state(path)
    assert later.step == 2
    with pytest.raises(BadInputError, match="backbone_lr_scale differ"):
        Trainer(clips[:2], clips[2:], TrainConfig(**SMALL, backbone_lr_scale=0.5), out=tmp_path / "m.pt").load_state(path)


def test_cli_resume_continues_a_stopped_run(tmp_path, write_davis, capsys):
    root = tmp_path / "davis"
    for seed, name in enumerate(["aa", "bb", "cc"]):
        video = synthetic_video(n_frames=5, n_objects=1, height=48, width=64, seed=seed)
        write_davis(root, name, video.frames, video.masks)
    common = ["train", "--davis-root", str(root), "--arch", "fcn-small", "--dim", "8", "--steps", "4", "--crop",
              "32", "--batch-pairs", "1", "--n-val", "1", "--val-every", "2", "--no-progress", "--weights", "none"]
    assert cli_main(common + ["--out", str(tmp_path / "whole.pt")]) == 0
    # the same run stopped after step 2 (through the API, which the CLI drives) ...
    from simwidgets.training import load_davis_clips

    config = TrainConfig(arch="fcn-small", arch_options={"dim": 8}, weights=None, steps=4, crop=32, batch_pairs=1,
                         val_every=2)
    record = load_checkpoint(tmp_path / "whole.pt")["training"]
    stopped = Trainer(load_davis_clips(root, record["train_sequences"]), load_davis_clips(root, record["val_sequences"]),
                      config, out=tmp_path / "part.pt", checkpoint_every=2)
    stopped.run(progress=False, until=2)
    # ... resumed from the command line
    code = cli_main(["train", "--davis-root", str(root), "--out", str(tmp_path / "part.pt"), "--no-progress",
                     "--resume", str(tmp_path / "part.state.pt")])
    assert code == 0, capsys.readouterr().err
    assert "resuming" in capsys.readouterr().out
    _same_state(load_model(tmp_path / "whole.pt").state_dict(), load_model(tmp_path / "part.pt").state_dict())
    assert cli_main(["train", "--davis-root", str(root), "--out", str(tmp_path / "x.pt"), "--resume",
                     str(tmp_path / "whole.pt")]) == 2


RANK_SCRIPT = textwrap.dedent("""
    import copy, json, os, sys
    import torch
    from simwidgets.training import TrainConfig, VideoClip
    from simwidgets.training.loop import Trainer
    from simwidgets.video import synthetic_video

    out = sys.argv[1]
    clips = [VideoClip.from_sequence(synthetic_video(n_frames=6, n_objects=2, height=40, width=56, seed=s))
             for s in range(3)]
    config = TrainConfig(arch="fcn-small", arch_options={"dim": 8, "width": 8}, weights=None, crop=32,
                         batch_pairs=2, n_triplets=16, steps=4, val_every=2, seed=5)
    trainer = Trainer(clips[:2], clips[2:], config, out=os.path.join(out, "ddp.pt"))
    first = copy.deepcopy(trainer.sampler).sample(2)
    trainer.run(progress=False)
    result = trainer.finish()
    rank = int(os.environ["RANK"])
    torch.save({"state": result.model.state_dict(), "first": first.images}, os.path.join(out, f"rank{rank}.pt"))
""")


def _torchrun(args, tmp_path, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_torchrun_two_processes_train_identical_weights(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    _torchrun([str(script), str(tmp_path)], tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    _same_state(ranks[0]["state"], ranks[1]["state"])  # DDP kept the ranks in step
    assert not torch.equal(ranks[0]["first"], ranks[1]["first"])  # each rank drew its own pairs
    model = load_model(tmp_path / "ddp.pt")  # one checkpoint, by rank 0, in the usual format
    _same_state(model.state_dict(), ranks[0]["state"])
    assert model.training_record["processes"] == 2


@pytest.mark.slow
def test_the_train_command_runs_unchanged_under_torchrun(tmp_path, write_davis):
    root = tmp_path / "davis"
    for seed, name in enumerate(["aa", "bb", "cc"]):
        video = synthetic_video(n_frames=5, n_objects=1, height=48, width=64, seed=seed)
        write_davis(root, name, video.frames, video.masks)
    done = _torchrun(["-m", "simwidgets", "train", "--davis-root", str(root), "--out", str(tmp_path / "m.pt"),
                      "--arch", "fcn-small", "--dim", "8", "--steps", "3", "--crop", "32", "--batch-pairs", "1",
                      "--n-val", "1", "--val-every", "0", "--no-progress", "--weights", "none",
                      "--checkpoint-every", "2"], tmp_path)
    assert done.stdout.count("done: best validation") == 1  # rank 0 speaks
    record = load_model(tmp_path / "m.pt").training_record
    assert record["processes"] == 2 and record["steps"] == 3
    assert json.loads(json.dumps(record))["command"].startswith("python -m simwidgets train")
    assert load_training_state(tmp_path / "m.state.pt")["processes"] == 2
