"""Training and fine-tuning TV3S with the official recipe, resumable, in the official key layout.

Recipe (local_configs/tv3s/*, mmseg 0.x): AdamW (lr 6e-5, betas 0.9/0.999, weight decay
0.01; no decay on norms, 10x learning rate on the head), poly schedule (power 1) with linear
warm-up, clips of frames t-9, t-6, t-3, t, loss ``0.5 · CE(per-frame linear_pred) +
CE(Mamba output of the last frame)`` on logits resized to the label size, ignore index 255.

Checkpoints are official-style ``{'meta', 'state_dict'}`` files (so ``load_checkpoint``
reads them with a strict key check), plus the optimizer state and iteration for resuming;
everything loads with ``weights_only=True``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from tqdm import tqdm

from .. import __version__
from .segmentor import MEAN, STD, TV3S

IGNORE_INDEX = 255


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 160_000
    batch_size: int = 2
    lr: float = 6e-5
    weight_decay: float = 0.01
    head_lr_mult: float = 10.0
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    power: float = 1.0
    mamba_frames: str = "last"  # "all" also supervises the Mamba output of every clip frame
    checkpoint_every: int = 1000
    seed: int = 0


def param_groups(model: TV3S, cfg: TrainConfig) -> list[dict]:
    """Official paramwise rules: 'norm' in the name -> no decay; 'head' in the name -> lr x10."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(("norm" in name, "head" in name), []).append(p)
    return [
        {
            "params": ps,
            "weight_decay": 0.0 if no_decay else cfg.weight_decay,
            "lr_mult": cfg.head_lr_mult if head else 1.0,
        }
        for (no_decay, head), ps in sorted(groups.items())
    ]


def learning_rate(cfg: TrainConfig, it: int) -> float:
    """Poly decay to 0 with mmcv's linear warm-up (from ``warmup_ratio`` of the poly value)."""
    poly = cfg.lr * (1 - it / cfg.iterations) ** cfg.power
    if it < cfg.warmup_iters:
        k = (1 - it / cfg.warmup_iters) * (1 - cfg.warmup_ratio)
        return poly * (1 - k)
    return poly


def clip_loss(model: TV3S, frames: torch.Tensor, labels: torch.Tensor, mamba_frames: str) -> torch.Tensor:
    """Official loss on uint8 clips [B, T, H, W, 3] with labels [B, T, H, W]."""
    mean = torch.tensor(MEAN, device=frames.device)
    std = torch.tensor(STD, device=frames.device)
    x = ((frames.float() - mean) / std).permute(0, 1, 4, 2, 3)
    frame_logits, mamba_logits = model.forward_train(x, mamba_frames)
    size = labels.shape[-2:]
    b, t = labels.shape[:2]
    per_frame = F.interpolate(frame_logits.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
    loss = 0.5 * F.cross_entropy(per_frame, labels.flatten(0, 1).long(), ignore_index=IGNORE_INDEX)
    mamba = F.interpolate(mamba_logits.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
    target = labels[:, -mamba_logits.shape[1] :].flatten(0, 1).long()
    return loss + F.cross_entropy(mamba, target, ignore_index=IGNORE_INDEX)


def save_checkpoint(
    path: Path,
    model: TV3S,
    meta: dict,
    optimizer: torch.optim.Optimizer | None = None,
    iteration: int | None = None,
    half: bool = False,
) -> None:
    """Official layout; ``half`` stores floating weights as fp16 (as the official releases)."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    obj: dict = {"meta": meta, "state_dict": state}
    if optimizer is not None:
        obj["optimizer"] = optimizer.state_dict()
        obj["iteration"] = iteration
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)  # never a half-written checkpoint under the final name


def checkpoint_meta(model: TV3S, extra: dict | None = None) -> dict:
    return {
        "tv3s_version": __version__,
        "CLASSES": tuple(model.class_names),
        "PALETTE": [[int(c) for c in rgb] for rgb in model.palette],
        "tv3s_config": json.dumps(model.cfg.to_dict()),
        **(extra or {}),
    }


def train(
    model: TV3S,
    sample_batch: Callable[[int], tuple[np.ndarray, np.ndarray]],
    cfg: TrainConfig,
    out_dir: Path,
    resume: bool = True,
    progress: bool = True,
    meta_extra: dict | None = None,
) -> Path:
    """Train ``model`` for ``cfg.iterations`` steps; returns the final checkpoint path.

    ``sample_batch(n)`` gives (frames uint8 [n, T, H, W, 3], labels uint8 [n, T, H, W]).
    With ``resume`` and a ``latest.pth`` in ``out_dir``, training continues from it.
    Writes ``latest.pth`` every ``checkpoint_every`` steps, ``final.pth`` (fp16 weights only),
    ``log.jsonl`` (one line per step) and ``loss.png``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model.train()
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=(0.9, 0.999))
    latest = out_dir / "latest.pth"
    log_path = out_dir / "log.jsonl"
    start = _start_iteration(model, optimizer, latest, log_path, resume)
    meta = checkpoint_meta(model, {"train_config": json.dumps(asdict(cfg)), **(meta_extra or {})})
    device = model.device
    with (
        log_path.open("a") as log,
        tqdm(total=cfg.iterations, initial=start, desc="train", disable=not progress) as bar,
    ):
        for it in range(start, cfg.iterations):
            record = _train_step(model, optimizer, sample_batch, cfg, it, device)
            log.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            bar.update(1)
            if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations:
                log.flush()
                save_checkpoint(latest, model, {**meta, "iteration": it + 1}, optimizer, it + 1)
                plot_loss(log_path, out_dir / "loss.png")
    model.eval()
    final = out_dir / "final.pth"
    save_checkpoint(final, model, {**meta, "iteration": cfg.iterations}, half=True)
    return final


def _start_iteration(model: TV3S, optimizer: torch.optim.Optimizer, latest: Path, log_path: Path, resume: bool) -> int:
    """The iteration to start from: ``latest``'s, with its weights and optimizer state restored; else 0.

    A run that starts over removes the old log, so that ``log.jsonl`` and ``loss.png`` describe this run only.
    """
    if resume and latest.exists():
        full = torch.load(latest, map_location="cpu", weights_only=True)  # our own file: one read
        own = model.state_dict()
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in full["state_dict"].items()})
        optimizer.load_state_dict(full["optimizer"])
        return int(full["iteration"])
    if log_path.exists():
        log_path.unlink()
    return 0


def _train_step(
    model: TV3S,
    optimizer: torch.optim.Optimizer,
    sample_batch: Callable[[int], tuple[np.ndarray, np.ndarray]],
    cfg: TrainConfig,
    it: int,
    device: torch.device,
) -> dict:
    """One optimizer step at iteration ``it`` (0-based); returns its ``log.jsonl`` record.

    Raises FloatingPointError on a non-finite loss: the weights are already spoilt, and going on would only
    overwrite the last good checkpoint.
    """
    lr = learning_rate(cfg, it)
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]
    frames, labels = sample_batch(cfg.batch_size)
    t0 = time.perf_counter()
    loss = clip_loss(model, torch.from_numpy(frames).to(device), torch.from_numpy(labels).to(device), cfg.mamba_frames)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"loss became {value} at iteration {it}; lower --lr")
    return {"iter": it + 1, "loss": value, "lr": lr, "step_s": time.perf_counter() - t0}


def plot_loss(log_path: Path, png: Path, size: tuple[int, int] = (640, 320)) -> None:
    """Loss curve (raw and smoothed) as a PNG, drawn with PIL to stay dependency-free."""
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if len(rows) < 2:
        return
    loss = np.array([r["loss"] for r in rows])
    k = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    w, h, pad = size[0], size[1], 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    lo, hi = float(loss.min()), float(loss.max()) or 1.0

    def pts(values: np.ndarray, offset: int) -> list[tuple[float, float]]:
        xs = pad + (np.arange(len(values)) + offset) / max(len(loss) - 1, 1) * (w - 2 * pad)
        ys = h - pad - (values - lo) / max(hi - lo, 1e-9) * (h - 2 * pad)
        return list(zip(xs.tolist(), ys.tolist()))

    draw.rectangle([pad, pad, w - pad, h - pad], outline="black")
    draw.line(pts(loss, 0), fill=(180, 200, 240), width=1)
    draw.line(pts(smooth, k // 2), fill=(20, 60, 160), width=2)
    draw.text((pad, 10), f"training loss (iterations {rows[0]['iter']}..{rows[-1]['iter']})", fill="black")
    draw.text((4, pad), f"{hi:.3f}", fill="black")
    draw.text((4, h - pad - 10), f"{lo:.3f}", fill="black")
    img.save(png)
