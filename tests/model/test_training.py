"""Training: the loss goes down, checkpoints load strictly, runs resume, shards round-trip."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tv3s.model import build_model, build_model_from_checkpoint, load_checkpoint
from tv3s.model.training import TrainConfig, clip_loss, learning_rate, param_groups, train
from tv3s.pipeline.synthetic.scenes import render_scene
from tv3s.pipeline.synthetic.training_data import (
    Augment,
    ClipSampler,
    clip_indices,
    read_training_shards,
    write_synthetic_shards,
)

from ..support.fixtures import fixture_config


def tiny_model():
    torch.manual_seed(0)
    return build_model({**fixture_config("tv3s-parity-small")["model"], "num_classes": 19})


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    return write_synthetic_shards(str(out), videos=2, frames=12, height=64, width=96, per_shard=10)


def test_shards_round_trip(shards):
    videos = read_training_shards(shards)
    assert len(shards) == 3 and list(videos) == ["synth00000", "synth00001"]
    frames = videos["synth00001"]
    assert [f.frame_index for f in frames] == list(range(12))  # ordered across shard boundaries
    _, labels = render_scene(1, 12, 64, 96)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(frames[5].mask))), labels[5])


def test_clip_sampler(shards):
    assert clip_indices(10) == [1, 4, 7, 10] and clip_indices(2) == [0, 0, 0, 2]
    sampler = ClipSampler(read_training_shards(shards), Augment(crop=(48, 80), scale=(0.5, 0.6)), seed=1)
    frames, labels = sampler.batch(3)
    assert frames.shape == (3, 4, 48, 80, 3) and labels.shape == (3, 4, 48, 80)
    assert (labels == 255).any()  # the small scale forces padding, which is ignored, never a class
    assert set(np.unique(labels).tolist()) <= set(range(19)) | {255}


@pytest.mark.slow
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(shards):
    model = tiny_model()
    model.train()
    frames, labels = ClipSampler(read_training_shards(shards), Augment(crop=(64, 64)), seed=0).batch(2)
    f, lab = torch.from_numpy(frames), torch.from_numpy(labels)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = clip_loss(model, f, lab, "all")
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_schedule_and_param_groups():
    cfg = TrainConfig(iterations=100, lr=1e-3, warmup_iters=10)
    assert learning_rate(cfg, 0) == pytest.approx(1e-3 * 1e-6, rel=1e-3)
    assert learning_rate(cfg, 10) == pytest.approx(1e-3 * 0.9)
    assert learning_rate(cfg, 99) == pytest.approx(1e-5)
    groups = param_groups(tiny_model(), cfg)
    head = [g for g in groups if g["lr_mult"] == 10.0]
    no_decay = [g for g in groups if g["weight_decay"] == 0.0]
    assert head and no_decay


def test_train_writes_loadable_checkpoints_and_resumes(tmp_path, shards):
    sampler = ClipSampler(read_training_shards(shards), Augment(crop=(64, 64)), seed=0)
    cfg = TrainConfig(iterations=3, batch_size=1, lr=5e-4, warmup_iters=1, checkpoint_every=2, mamba_frames="all")
    model = tiny_model()
    final = train(model, sampler.batch, cfg, tmp_path, progress=False)
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "latest.pth").is_file()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [1, 2, 3]
    # strict load into a fresh model of the same architecture, and inference from the checkpoint alone
    loaded = load_checkpoint(tiny_model(), final)
    rebuilt = build_model_from_checkpoint(final)
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded.predict_stream(frames)[0], rebuilt.predict_stream(frames)[0], atol=1e-6)
    # resume: a longer run continues from latest.pth (iteration 3) instead of starting over
    train(tiny_model(), sampler.batch, TrainConfig(**{**cfg.__dict__, "iterations": 5}), tmp_path, progress=False)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [1, 2, 3, 4, 5]


def test_training_after_inference_in_the_same_process():
    """Cached window index maps first built under inference_mode must not poison training."""
    model = tiny_model()
    frames = np.random.default_rng(0).integers(0, 256, (1, 40, 40, 3), dtype=np.uint8)
    model.predict_stream(frames)  # builds the cached index maps inside inference_mode
    model.train()
    clip = torch.from_numpy(np.stack([frames.repeat(4, axis=0)]))
    loss = clip_loss(model, clip, torch.zeros(1, 4, 40, 40, dtype=torch.uint8), "last")
    loss.backward()
