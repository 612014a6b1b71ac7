"""TV3S as a video segmentor: encoder + head, with the two inference modes.

* **clip** - the paper's test protocol: frame t is predicted from the clip
  ``[t-9, t-6, t-3, t]`` (a fixed table for t < 9, a one-frame clip for t < 3, which takes
  the head's early path without Mamba). Each frame is encoded once and its features reused
  by every clip that contains it; the official code encodes all four frames of every clip.
* **stream** - the Mamba state is carried across every frame of the video: frame t's
  prediction equals the official head's output for the whole prefix ``[0..t]`` given as one
  clip. The state is an explicit :class:`~tv3s.model.state.StreamState` value.

Both take uint8 RGB frames ``[T, H, W, 3]`` and return float32 logits at 1/4 resolution
``[T, C, ceil(H/4), ceil(W/4)]`` (or at full resolution on request).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..schemas.classes import default_palette
from .config import MiTConfig, ModelConfig
from .graphs import StepGraphs
from .head import TV3SHead
from .mamba import MixerState, StackState
from .mit import MixVisionTransformer
from .state import StateMismatchError, StreamState
from .windows import WindowGeometry, layer_groups

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
# The MiT encoder's first spatial-reduction conv (8x8 at stride 4) needs at least 32 pixels.
MIN_SIDE = 32
# Official VSPW test clips for the first frames (CustomDataset_video2.prepare_test_img2):
# t < 3 are one-frame clips, t in 3..8 use this table, later frames [t-9, t-6, t-3, t].
_EARLY_CLIPS = {3: (0, 1, 2, 3), 4: (0, 2, 3, 4), 5: (0, 2, 4, 5), 6: (0, 2, 4, 6), 7: (0, 3, 5, 7), 8: (0, 3, 6, 8)}


def official_clip(t: int) -> tuple[int, ...]:
    """Frame indices of the official test clip that predicts frame ``t`` (last entry is t)."""
    if t < 0:
        raise ValueError(f"frame index must be >= 0, got {t}")
    if t < 3:
        return (t,)
    return _EARLY_CLIPS.get(t, (t - 9, t - 6, t - 3, t))


def build_backbone(cfg: ModelConfig) -> nn.Module:
    if isinstance(cfg.backbone_arch, MiTConfig):
        return MixVisionTransformer(cfg.backbone_arch)
    from .swin import SwinBackbone

    a = cfg.backbone_arch
    return SwinBackbone(
        a.embed_dim, a.depths, a.num_heads, a.window_size, a.mlp_ratio, a.qkv_bias, a.patch_size, eps=a.eps
    )


class TV3S(nn.Module):
    """Encoder (``backbone``) + TV3S head (``decode_head``), named as in the official checkpoints."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg)
        self.decode_head = TV3SHead(cfg.head)
        # "auto": on a GPU the Triton kernels (inference) or mamba-ssm's (training) when installed;
        # "torch": always the pure path; "triton" / "cuda": those kernels or an error (ssm.resolve_backend).
        self.backend = "auto"
        # Stream steps on CUDA replayed from CUDA graphs (graphs.py). Off until measured on a GPU.
        self.cuda_graphs = False
        self._step_graphs: dict[bool, StepGraphs] = {}
        self.checkpoint_sha256: str | None = None
        self._digest_key: tuple | None = None
        self._digest: str = ""
        self.eval()

    # ----------------------------------------------------------------- metadata
    @property
    def num_classes(self) -> int:
        return self.cfg.head.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.cfg.class_names) if self.cfg.class_names else [f"class_{i}" for i in range(self.num_classes)]

    @property
    def palette(self) -> np.ndarray:
        if self.cfg.palette:
            return np.asarray(self.cfg.palette, dtype=np.uint8)
        return default_palette(self.num_classes)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def weights_digest(self) -> str:
        """sha256 of every parameter and buffer; recomputed only when a tensor changed."""
        tensors = list(self.state_dict(keep_vars=True).items())
        key = tuple((k, v.data_ptr(), v._version) for k, v in tensors)
        if key != self._digest_key:
            h = hashlib.sha256()
            for k, v in tensors:
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
            self._digest, self._digest_key = h.hexdigest(), key
        return self._digest

    @property
    def model_id(self) -> str:
        """Identifies the exact model: architecture fingerprint + checkpoint (or weights) hash."""
        weights = self.checkpoint_sha256 or self.weights_digest()
        return f"{self.cfg.backbone}:{self.cfg.head.variant}:{self.cfg.fingerprint()}:{weights[:16]}"

    # ------------------------------------------------------------ per-frame work
    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 RGB [T, H, W, 3] -> normalised float32 [T, 3, H, W] on the model's device."""
        if not isinstance(frames, np.ndarray):
            raise TypeError(f"frames must be a numpy uint8 array [T, H, W, 3], got {type(frames).__name__}")
        if frames.dtype != np.uint8:
            raise TypeError(
                f"frames must be uint8 RGB, got dtype {frames.dtype}; convert with frames.astype(np.uint8) "
                "only if the values are already 0..255"
            )
        if frames.ndim != 4:
            hint = " (a single frame? pass frames[None])" if frames.ndim == 3 else ""
            raise ValueError(f"frames must have shape [T, H, W, 3], got {list(frames.shape)}{hint}")
        t, h, w, c = frames.shape
        if c != 3:
            raise ValueError(
                f"frames must have 3 (RGB) channels in the last axis, got {c} (shape {list(frames.shape)})"
            )
        if t == 0:
            raise ValueError("frames is empty (T = 0)")
        if min(h, w) < MIN_SIDE:
            raise ValueError(f"frames of {h}x{w} are too small: TV3S needs at least {MIN_SIDE} pixels per side")
        x = torch.from_numpy(np.ascontiguousarray(frames))
        # to a GPU through pinned memory, so the host need not wait for the GPU's queue
        x = x.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else x.to(self.device)
        mean, std = _normalization(self.device)
        return ((x.float() - mean) / std).permute(0, 3, 1, 2).contiguous()

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised frames [N, 3, H, W] -> fused head maps [N, E, h/4, w/4]."""
        return self.decode_head.fuse(self.backbone(x))

    def _logits_out(self, logits: torch.Tensor, hw: tuple[int, int], full_resolution: bool) -> torch.Tensor:
        if full_resolution:
            logits = F.interpolate(logits, size=hw, mode="bilinear", align_corners=False)
        return logits.float()

    @staticmethod
    def _returned(logits: torch.Tensor, on_device: bool) -> np.ndarray | torch.Tensor:
        """float32 logits as numpy, or as a tensor on the model's device (`on_device`: for callers
        that reduce them there, e.g. to label maps, instead of copying every class plane out)."""
        return logits if on_device else logits.cpu().numpy()

    # ---------------------------------------------------------------- stream
    @torch.inference_mode()
    def predict_stream(
        self,
        frames: np.ndarray,
        state: StreamState | None = None,
        full_resolution: bool = False,
        frames_per_step: int = 4,
        on_device: bool = False,
    ) -> tuple[np.ndarray | torch.Tensor, StreamState]:
        """Predict every frame carrying the Mamba state; pass the returned state back to continue.

        Exact: any split of a video into calls gives the same logits as one call. Frames are
        processed ``frames_per_step`` at a time (memory), which is itself such a split.
        Logits are numpy, or with ``on_device`` a float32 tensor on the model's device.
        """
        logits, states = self.predict_stream_batch([frames], [state], full_resolution, frames_per_step, on_device)
        return logits[0], states[0]

    @torch.inference_mode()
    def predict_stream_batch(
        self,
        clips: Sequence[np.ndarray],
        states: Sequence[StreamState | None],
        full_resolution: bool = False,
        frames_per_step: int = 4,
        on_device: bool = False,
    ) -> tuple[list[np.ndarray | torch.Tensor], list[StreamState]]:
        """``predict_stream`` for several videos in one forward pass, each with its own state.

        The clips must have one shape [T, H, W, 3]. Each video's windows are its own rows of
        the Mamba batch (video-major), so nothing mixes across videos; results equal separate
        calls up to float rounding (batched matrix products may sum in another order).
        """
        if len(clips) != len(states):
            raise ValueError(f"{len(clips)} clips but {len(states)} states")
        if not clips:
            return [], []
        inputs = [self.preprocess(c) for c in clips]  # each checked, with the error naming what is wrong
        shape = clips[0].shape
        if any(c.shape != shape for c in clips):
            raise ValueError(f"clips must share one shape to be batched, got {sorted({c.shape for c in clips})}")
        b, (t, h, w) = len(clips), shape[:3]
        for state in states:
            if state is not None:
                self._check_state(state, (h, w))
        x = torch.stack(inputs)  # [B, T, 3, H, W]
        layers = self._batched_layers(states)
        step = self._graphed_step if self.cuda_graphs and x.is_cuda else self._stream_step
        outs: list[list[torch.Tensor]] = [[] for _ in range(b)]
        geom = None
        for start in range(0, t, max(1, frames_per_step)):
            part = x[:, start : start + frames_per_step]
            s = part.shape[1]
            logits, layers, geom = step(part, layers, full_resolution)
            for k in range(b):
                outs[k].append(logits[k * s : (k + 1) * s])
        digest, fingerprint = self.weights_digest(), self.cfg.fingerprint()
        new_states = []
        for k, state in enumerate(states):
            own = tuple(tuple(_rows_of_video(st, k, b) for st in groups) for groups in layers)
            seen = 0 if state is None else state.frames_seen
            new_states.append(StreamState(own, fingerprint, digest, (h, w), (geom.height, geom.width), seen + t))
        return [self._returned(torch.cat(o), on_device) for o in outs], new_states

    def _stream_step(
        self, part: torch.Tensor, layers: StackState | None, full_resolution: bool
    ) -> tuple[torch.Tensor, StackState, WindowGeometry]:
        """B videos' next S frames [B, S, 3, H, W] continuing `layers` (None: from the start)
        -> (logits [B*S, C, h, w], the state after them, the Mamba grid's geometry)."""
        b, s, _, h, w = part.shape
        head = self.decode_head
        fused = self._fused(part.reshape(b * s, 3, h, w))
        quarter = tuple(fused.shape[-2:])
        geom = head.geometry(quarter)
        grid = head.to_grid(fused, geom)
        tokens, layers = head.temporal(grid.view(b, s, *grid.shape[1:]), geom, layers, self.backend)
        logits = head.classify(tokens.reshape(b * s, *tokens.shape[2:]), quarter)
        return self._logits_out(logits, (h, w), full_resolution), layers, geom

    def _graphed_step(
        self, part: torch.Tensor, layers: StackState | None, full_resolution: bool
    ) -> tuple[torch.Tensor, StackState, WindowGeometry]:
        """`_stream_step` replayed from a CUDA graph once its shape repeats (see graphs.py)."""
        graphs = self._step_graphs.get(full_resolution)
        if graphs is None:
            step = functools.partial(self._stream_step, full_resolution=full_resolution)
            graphs = self._step_graphs[full_resolution] = StepGraphs(step, self._zero_layers)
        return graphs(part, layers, key=self.backend)

    def _zero_layers(self, videos: int, geom: WindowGeometry) -> StackState:
        """The state of `videos` fresh videos, as tensors (what no state means)."""
        return tuple(
            tuple(
                layer.mixer.initial_state(videos * idx.shape[0], self.device)
                for idx in layer_groups(geom, shifted=i % 2 == 1)
            )
            for i, layer in enumerate(self.decode_head.vs.layers)
        )

    def _batched_layers(self, states: Sequence[StreamState | None]) -> StackState | None:
        """The videos' states stacked video-major per window group (zeros = a fresh start)."""
        if all(s is None for s in states):
            return None
        geom = self.decode_head.grid_geometry(next(s for s in states if s is not None).grid_hw)
        states = [None if s is None else s.to(self.device) for s in states]  # once: each .to() is a dispatch
        stacked = []
        for i, layer in enumerate(self.decode_head.vs.layers):
            per_group = []
            for g, idx in enumerate(layer_groups(geom, shifted=i % 2 == 1)):
                parts = [
                    layer.mixer.initial_state(idx.shape[0], self.device) if s is None else s.layers[i][g]
                    for s in states
                ]
                per_group.append(MixerState(_rows([p.conv for p in parts]), _rows([p.ssm for p in parts])))
            stacked.append(tuple(per_group))
        return tuple(stacked)

    def _check_state(self, state: StreamState, hw: tuple[int, int]) -> None:
        if not isinstance(state, StreamState):
            raise TypeError(
                f"state must be a StreamState (from predict_stream or StreamState.from_bytes), got {type(state).__name__}"
            )
        if state.model_fingerprint != self.cfg.fingerprint():
            raise StateMismatchError(
                f"the stream state belongs to another architecture (fingerprint {state.model_fingerprint}, "
                f"this model {self.cfg.fingerprint()}); start the video again with state=None"
            )
        if state.weights_digest != self.weights_digest():
            raise StateMismatchError(
                "the stream state was computed with other weights (digest "
                f"{state.weights_digest[:12]}, this model {self.weights_digest()[:12]}); resume with the same checkpoint"
            )
        if tuple(state.input_hw) != tuple(hw):
            raise StateMismatchError(
                f"frames are {hw[0]}x{hw[1]} but the stream state was built for {state.input_hw[0]}x{state.input_hw[1]}: "
                "the frame size cannot change in the middle of a stream; resize the frames or start a new stream"
            )

    # ------------------------------------------------------------------ clip
    def clip_has_prediction(self, t: int) -> bool:
        """False where the official clip output for frame ``t`` is the city head's all-zero map."""
        return len(official_clip(t)) == self.cfg.head.num_clips or self.cfg.head.variant != "TV3SHead_shift_city"

    @torch.inference_mode()
    def predict_clip(
        self,
        frames: np.ndarray,
        targets: Sequence[int] | None = None,
        offset: int = 0,
        full_resolution: bool = False,
        clips_per_step: int = 2,
        on_device: bool = False,
    ) -> np.ndarray | torch.Tensor:
        """Official clip protocol for video frames ``offset + targets`` (default: all given).

        ``frames[i]`` is video frame ``offset + i``; every clip frame of every target must be
        among them (frames t-9..t, or the whole start of the video for t < 9).
        """
        x = self.preprocess(frames)
        t_count, h, w = frames.shape[0], frames.shape[1], frames.shape[2]
        targets = list(range(t_count)) if targets is None else [int(i) for i in targets]
        clips = {}
        for i in targets:
            clip = official_clip(offset + i)
            missing = [f for f in clip if not offset <= f < offset + t_count]
            if missing:
                raise ValueError(
                    f"the clip for frame {offset + i} needs frames {list(clip)}, but frames {missing} are not given "
                    f"(frames cover {offset}..{offset + t_count - 1}); pass the 9 frames before each target"
                )
            clips[i] = clip
        head = self.decode_head
        needed = sorted({f - offset for c in clips.values() for f in c})
        early = {i for i, c in clips.items() if len(c) != head.cfg.num_clips}
        grids: dict[int, torch.Tensor] = {}
        fused_early: dict[int, torch.Tensor] = {}
        quarter = geom = None
        for start in range(0, len(needed), 4):
            idx = needed[start : start + 4]
            fused = self._fused(x[idx])
            quarter = tuple(fused.shape[-2:])
            geom = head.geometry(quarter)
            grid = head.to_grid(fused, geom)
            for k, f in enumerate(idx):
                grids[f] = grid[k]
                if f in early:
                    fused_early[f] = fused[k : k + 1]
        results: dict[int, torch.Tensor] = {i: head.early_logits(fused_early[i])[0] for i in early}
        full = [i for i in targets if i not in early]
        for start in range(0, len(full), max(1, clips_per_step)):
            batch = full[start : start + clips_per_step]
            grid = torch.stack([torch.stack([grids[f - offset] for f in clips[i]]) for i in batch])
            tokens, _ = head.temporal(grid, geom, None, self.backend)
            logits = head.classify(tokens[:, -1], quarter)
            results.update({i: logits[k] for k, i in enumerate(batch)})
        stacked = torch.stack([results[i] for i in targets])
        return self._returned(self._logits_out(stacked, (h, w), full_resolution), on_device)

    def forward_train(self, clips: torch.Tensor, mamba_frames: str = "last") -> tuple[torch.Tensor, torch.Tensor]:
        """Training forward on normalised clips [B, T, 3, H, W] (the official training head).

        Returns ``(frame_logits [B, T, C, h, w], mamba_logits [B, T', C, h, w])``: per-frame
        ``linear_pred`` logits, and the Mamba path's logits for the last frame (official
        recipe, ``mamba_frames="last"``, T' = 1) or for every frame (``"all"``: supervises
        what stream mode predicts at every position of the sequence).
        """
        b, t = clips.shape[:2]
        head = self.decode_head
        fused = self._fused(clips.flatten(0, 1))
        quarter = tuple(fused.shape[-2:])
        frame_logits = head.linear_pred(head.dropout(fused)).reshape(b, t, -1, *quarter)
        geom = head.geometry(quarter)
        grid = head.to_grid(fused, geom).reshape(b, t, geom.height, geom.width, -1)
        tokens, _ = head.temporal(grid, geom, None, self.backend)
        if mamba_frames == "last":
            tokens = tokens[:, -1:]
        elif mamba_frames != "all":
            raise ValueError(f"mamba_frames must be 'last' or 'all', got {mamba_frames!r}")
        mamba_logits = head.classify(tokens.flatten(0, 1), quarter)
        return frame_logits, mamba_logits.reshape(b, -1, *mamba_logits.shape[1:])

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Official forward on normalised clips [B, T, 3, H, W] -> logits of each clip's last frame.

        Every frame of every clip is encoded (the official protocol); a clip shorter than
        ``num_clips`` takes the early path, as in the official test mode.
        """
        b, t = clips.shape[:2]
        head = self.decode_head
        fused = self._fused(clips.flatten(0, 1))
        quarter = tuple(fused.shape[-2:])
        if t != head.cfg.num_clips:
            return head.early_logits(fused.reshape(b, t, *fused.shape[1:])[:, -1])
        geom = head.geometry(quarter)
        grid = head.to_grid(fused, geom).reshape(b, t, geom.height, geom.width, -1)
        tokens, _ = head.temporal(grid, geom, None, self.backend)
        return head.classify(tokens[:, -1], quarter)


@functools.lru_cache(maxsize=8)
def _normalization(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The input mean and std on `device`, copied there once: a blocking copy from host memory
    waits for all the GPU work queued before it, so one per call would stop the host from
    queuing the next frames while the GPU runs. Built outside inference mode (the cache
    outlives the call)."""
    with torch.inference_mode(False):
        return torch.tensor(MEAN, device=device), torch.tensor(STD, device=device)


def _rows(parts: list[torch.Tensor]) -> torch.Tensor:
    """The videos' rows as one tensor; a video alone is used as it is (the step only reads it)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _rows_of_video(state: MixerState, k: int, videos: int) -> MixerState:
    """Video k's rows of a batched mixer state, copied: a view would keep the whole batch's
    tensor alive for as long as any one video's state is kept."""
    n = len(state.conv) // videos
    return MixerState(state.conv[k * n : (k + 1) * n].clone(), state.ssm[k * n : (k + 1) * n].clone())
