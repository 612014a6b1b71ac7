"""The stream state: everything a video's prediction depends on from its past frames.

In TV3S only the Mamba mixers look across frames, so the state of a video after frame t is
the conv and SSM state of every window sequence of every decoder layer. It is a plain value:
saved with safetensors (no pickle), moved to another machine, and resumed from with results
identical to never having stopped. It records what it belongs to (architecture fingerprint,
weights digest, input resolution, Mamba grid) so it cannot silently be applied to another
model or another resolution.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .mamba import MixerState, StackState

FORMAT = "tv3s.stream_state/1"


class StateMismatchError(ValueError):
    """A stream state applied to a model or resolution it does not belong to."""


@dataclass(frozen=True)
class StreamState:
    """The Mamba state of one video after ``frames_seen`` frames at ``input_hw``.

    A value: frozen, its layers tuples, and its tensors are never written in place by
    anyone (the model builds new tensors for every step; `to` and the batched path copy).
    That rule is what lets a state be kept as a resume point, sent to another actor or
    used twice (a re-run from a resume point) with identical results.
    """

    layers: StackState
    model_fingerprint: str
    weights_digest: str
    input_hw: tuple[int, int]
    grid_hw: tuple[int, int]
    frames_seen: int

    def to_bytes(self) -> bytes:
        """Serialise to safetensors bytes (tensors on CPU, metadata as strings)."""
        tensors: dict[str, torch.Tensor] = {}
        for i, groups in enumerate(self.layers):
            for g, st in enumerate(groups):
                tensors[f"layers.{i}.{g}.conv"] = st.conv.detach().float().cpu().contiguous()
                tensors[f"layers.{i}.{g}.ssm"] = st.ssm.detach().float().cpu().contiguous()
        meta = {
            "format": FORMAT,
            "model_fingerprint": self.model_fingerprint,
            "weights_digest": self.weights_digest,
            "input_hw": json.dumps(list(self.input_hw)),
            "grid_hw": json.dumps(list(self.grid_hw)),
            "frames_seen": str(self.frames_seen),
            "num_layers": str(len(self.layers)),
            "groups_per_layer": json.dumps([len(g) for g in self.layers]),
        }
        return st_save(tensors, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> StreamState:
        """Inverse of :meth:`to_bytes`; a clear error for anything that is not a TV3S state."""
        try:
            tensors = st_load(data)
            meta = safetensors_metadata(data)
        except Exception as exc:
            raise StateMismatchError(f"not a TV3S stream state (safetensors could not read it: {exc})") from exc
        if meta.get("format") != FORMAT:
            raise StateMismatchError(f"not a TV3S stream state: format {meta.get('format')!r}, expected {FORMAT!r}")
        groups = json.loads(meta["groups_per_layer"])
        layers = tuple(
            tuple(MixerState(tensors[f"layers.{i}.{g}.conv"], tensors[f"layers.{i}.{g}.ssm"]) for g in range(n))
            for i, n in enumerate(groups)
        )
        return cls(
            layers=layers,
            model_fingerprint=meta["model_fingerprint"],
            weights_digest=meta["weights_digest"],
            input_hw=tuple(json.loads(meta["input_hw"])),
            grid_hw=tuple(json.loads(meta["grid_hw"])),
            frames_seen=int(meta["frames_seen"]),
        )

    def to(self, device: torch.device | str) -> StreamState:
        """The same state with its tensors on ``device``."""
        layers = tuple(tuple(MixerState(s.conv.to(device), s.ssm.to(device)) for s in g) for g in self.layers)
        return dataclasses.replace(self, layers=layers)


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The safetensors header's ``__metadata__`` (the library exposes it only for files)."""
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    return header.get("__metadata__", {})
