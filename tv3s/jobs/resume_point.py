"""What a chain leaves after a unit so any actor can continue it exactly: a safetensors value.

Three things make the continuation identical to never having stopped: the model's
carried context (the StreamState's Mamba states, or clip mode's last frames), the data
plane's cursor (frame numbering, size and segment checks, a pending reset) and the
previous frame's label map (the temporal agreement of the next frame is computed
against it). All three travel in one safetensors blob: tensors and JSON metadata, never
pickle, so a checkpoint read back from a bucket cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..model.predict import ClipHistory
from ..model.state import StreamState, safetensors_metadata
from ..pipeline.ingest.chunks import CursorState

FORMAT = "tv3s.resume_point/1"


class ResumePointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what happens instead."""


@dataclass(frozen=True)
class ResumePoint:
    """The state of a chain after unit `unit` of video `video_id`."""

    video_id: str
    unit: int
    cursor: CursorState
    carried: StreamState | ClipHistory | None  # None: the next frame starts a fresh state anyway
    previous_labels: tuple[int, np.ndarray] | None  # (frame index, label map) of the last frame
    warmed_up: bool = False  # the chain's state began with a warm-up (policy split): rows say so

    def to_bytes(self) -> bytes:
        tensors: dict[str, torch.Tensor] = {}
        meta = {
            "format": FORMAT,
            "video_id": self.video_id,
            "unit": str(self.unit),
            "cursor": json.dumps(asdict(self.cursor)),
            "warmed_up": json.dumps(self.warmed_up),
            "carried": "none",
        }
        if isinstance(self.carried, StreamState):
            meta["carried"] = "stream"
            tensors["stream_state"] = torch.frombuffer(bytearray(self.carried.to_bytes()), dtype=torch.uint8)
        elif isinstance(self.carried, ClipHistory):
            meta["carried"] = "clip"
            meta["clip_start"] = str(self.carried.start)
            if self.carried.frames is not None:
                tensors["clip_frames"] = torch.from_numpy(np.ascontiguousarray(self.carried.frames))
        if self.previous_labels is not None:
            index, labels = self.previous_labels
            meta["previous_frame"] = str(index)
            tensors["previous_labels"] = torch.from_numpy(np.ascontiguousarray(labels))
        return st_save(tensors, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> ResumePoint:
        try:
            tensors = st_load(data)
            meta = safetensors_metadata(data)
        except Exception as exc:  # a damaged blob: the caller restarts the chain from its start
            raise ResumePointError(f"{where}: not a readable resume point ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise ResumePointError(f"{where}: format {meta.get('format')!r}, expected {FORMAT}")
        cursor = CursorState(**json.loads(meta["cursor"]))
        carried: StreamState | ClipHistory | None = None
        if meta["carried"] == "stream":
            carried = StreamState.from_bytes(tensors["stream_state"].numpy().tobytes())
        elif meta["carried"] == "clip":
            frames = tensors.get("clip_frames")
            carried = ClipHistory(None if frames is None else frames.numpy(), int(meta["clip_start"]))
        previous = None
        if "previous_labels" in tensors:
            previous = (int(meta["previous_frame"]), tensors["previous_labels"].numpy())
        return cls(meta["video_id"], int(meta["unit"]), cursor, carried, previous, json.loads(meta["warmed_up"]))
