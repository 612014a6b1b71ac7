"""Turn decode-head logits into label maps, store them losslessly, and draw them.

`logits_to_labels` is the official TV3S rule (bilinear resize of the logits to
the frame size with align_corners=False, then argmax over classes), computed in
class chunks so that a 124-class 1080p frame never holds its full C x H x W
resized logits (about 1 GB) at once, while giving exactly the labels of the
one-shot resize.

Why class chunks and not bands of output rows: a resize of a row slab cannot
reproduce the full resize bit for bit. ATen derives each output row's source
row and weight from the *global* row index and the global scale h/H. Unless
H/h is an integer a slab's output grid cannot even be aligned with the full
one; when it is, the float32 weights still differ in the last bits unless H/h
is a power of two (measured for x3 and x5), and the rounding itself differs
between builds (fused multiply-add on AVX2/AVX512, plain on the default
build, other code on CUDA), so re-implementing the kernel by hand only matches
one machine. Each class plane, however, is resized independently by the same
kernel, so resizing a subset of classes gives bit-identical values, and a
running argmax with a strict `>` keeps torch.argmax's first-maximum tie rule.
The running argmax goes class plane by class plane even within a chunk: on CPU
`argmax(0)` over [C, H, W] strides across planes and took 6.7 ms for 19 classes
at 192x384, the plane-by-plane pass 1.3 ms (the resize itself 1.3 ms).
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

DEFAULT_MAX_ELEMENTS = 1 << 25  # 128 MiB of float32 resized logits held at once
MIN_CLASS_CHUNK = 4
SMALL_OUTPUT = 128


def label_dtype(num_classes: int) -> np.dtype:
    """uint8 for up to 255 classes (keeping 255 free as the usual ignore index), else uint16."""
    if num_classes > 65535:
        raise ValueError(f"{num_classes} classes do not fit a uint16 label map")
    return np.dtype(np.uint8) if num_classes <= 255 else np.dtype(np.uint16)


def logits_to_labels(
    logits: torch.Tensor, size: tuple[int, int], max_elements: int = DEFAULT_MAX_ELEMENTS
) -> np.ndarray:
    """Label map(s) at `size` = (H, W) from logits [C, h, w] or [T, C, h, w].

    Equal, pixel for pixel, to
    `F.interpolate(logits[None], size, mode="bilinear", align_corners=False)[0].argmax(0)`
    on the same device, per frame. At most about `max_elements` resized logit
    values (classes x H x W) exist at any time. Returns uint8 [H, W] or
    [T, H, W] (uint16 when C > 255).
    """
    if not bool(torch.isfinite(logits).all()):
        raise ValueError(NOT_FINITE)
    labels = labels_on_device(logits, size, max_elements).cpu().numpy()
    return labels.astype(label_dtype(logits.shape[-3]), copy=False)


NOT_FINITE = "logits contain NaN or inf; the model output is broken (check the weights and inputs)"


def _check_logits(logits: torch.Tensor) -> None:
    if logits.ndim not in (3, 4):
        raise ValueError(f"logits must be [C, h, w] or [T, C, h, w], got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating point tensor, got {logits.dtype}")


def labels_on_device(
    logits: torch.Tensor, size: tuple[int, int], max_elements: int = DEFAULT_MAX_ELEMENTS
) -> torch.Tensor:
    """`logits_to_labels` where the logits are, without waiting for them: uint8 (int32 past 255
    classes) [H, W] or [T, H, W] on the logits' device. The caller copies it out when it
    needs it, e.g. asynchronously while the GPU predicts the next chunk, and checks that the
    logits were finite (a NaN never wins a comparison, so it would not show in the labels)."""
    _check_logits(logits)
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive (H, W), got {size}")
    if logits.ndim == 3:
        return _frame_labels(logits, height, width, max_elements)
    out = torch.empty((logits.shape[0], height, width), dtype=_index_dtype(logits.shape[1]), device=logits.device)
    for i, frame in enumerate(logits):
        out[i] = _frame_labels(frame, height, width, max_elements)
    return out


def _index_dtype(num_classes: int) -> torch.dtype:
    return torch.uint8 if num_classes <= 255 else torch.int32


def class_chunks(num_classes: int, per_chunk: int) -> list[slice]:
    """Class ranges of about `per_chunk` classes, none smaller than MIN_CLASS_CHUNK.

    ATen sends a 3-channel resize to a different kernel when running single
    threaded, so a 3-class chunk could round differently from the full resize;
    a short tail is therefore merged into the chunk before it.
    """
    per_chunk = max(per_chunk, MIN_CLASS_CHUNK)
    starts = list(range(0, num_classes, per_chunk))
    if len(starts) > 1 and num_classes - starts[-1] < MIN_CLASS_CHUNK:
        starts.pop()
    ends = [*starts[1:], num_classes]
    return [slice(a, b) for a, b in zip(starts, ends, strict=True)]


def _frame_labels(
    frame: torch.Tensor, height: int, width: int, max_elements: int, by_plane: bool | None = None
) -> torch.Tensor:
    """The label map [H, W] of one frame, on its device.

    Each class chunk's argmax is taken plane by plane on CPU (faster there, see the module
    docstring) and as one `max` over the chunk elsewhere: on a GPU the plane loop is three
    kernel launches per class (372 a frame for VSPW's 124), one `max` is one. Both keep
    the first maximum on ties (`torch.max`'s documented rule; strict `>` in the loop), so
    they give the same labels (tested by forcing `by_plane`).
    """
    x = frame.unsqueeze(0).contiguous()
    num_classes, h, w = frame.shape
    chunks = class_chunks(num_classes, max_elements // (height * width))
    # ATen resizes small outputs (H + W <= 128) and [1, C, 1, 1] inputs with its
    # channels-last kernel, whose rounding depends on a class's position in the
    # SIMD vector; those outputs are tiny, so resize all classes in one go.
    if height + width <= SMALL_OUTPUT or h * w == 1:
        chunks = [slice(0, num_classes)]
    by_plane = frame.device.type == "cpu" if by_plane is None else by_plane
    best_val = best_idx = None
    for part in chunks:
        resized = _resize(x[:, part], height, width)
        if best_val is None:
            best_val = resized[0].clone()
            best_idx = torch.zeros((height, width), dtype=_index_dtype(num_classes), device=frame.device)
        if not by_plane:
            value, index = resized.max(0)
            better = value > best_val  # strict: on ties the earlier chunk's class wins
            best_idx = torch.where(better, index.to(best_idx.dtype) + part.start, best_idx)
            torch.maximum(best_val, value, out=best_val)
            continue
        for c in range(part.start, part.stop):
            plane = resized[c - part.start]
            better = plane > best_val  # strict: on ties the lower class wins, like argmax
            best_idx.masked_fill_(better, c)
            torch.maximum(best_val, plane, out=best_val)
    return best_idx


def _resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)[0]


# --- lossless storage -------------------------------------------------------------------


def encode_mask_png(labels: np.ndarray) -> bytes:
    """Lossless PNG of a label map: 8-bit greyscale for uint8, 16-bit for uint16."""
    if labels.ndim != 2 or labels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"labels must be a 2-D uint8 or uint16 array, got {labels.dtype} {labels.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(labels)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_mask_png(data: bytes) -> np.ndarray:
    """Inverse of `encode_mask_png`; also reads palette PNGs, whose indices are the labels."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode in ("L", "P"):
            return np.asarray(img, dtype=np.uint8).copy()
        if img.mode.startswith("I;16") or img.mode == "I":
            arr = np.asarray(img)
            if arr.min() < 0 or arr.max() > 65535:
                raise ValueError(f"PNG values {arr.min()}..{arr.max()} do not fit a uint16 label map")
            return arr.astype(np.uint16)
        raise ValueError(
            f"PNG mode {img.mode!r} is not a label map; expected 8/16-bit greyscale or palette "
            "(label maps written by encode_mask_png)"
        )


# --- drawing ------------------------------------------------------------------------------


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """RGB image [..., 3] uint8 of a label map, one palette colour per class."""
    palette = np.asarray(palette, dtype=np.uint8)
    if labels.size and int(labels.max()) >= len(palette):
        raise ValueError(f"label {int(labels.max())} has no colour in a palette of {len(palette)} classes")
    return palette[labels]


def overlay(frame: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over an RGB frame: (1 - alpha) * frame + alpha * colour, uint8."""
    if frame.shape[:2] != labels.shape:
        raise ValueError(f"frame {frame.shape[:2]} and labels {labels.shape} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blend = frame.astype(np.float32) * (1.0 - alpha) + colorize(labels, palette).astype(np.float32) * alpha
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)


def preview_strip(
    frames: list[np.ndarray],
    labels_list: list[np.ndarray],
    palette: np.ndarray,
    max_frames: int = 8,
    tile_width: int = 480,
) -> np.ndarray:
    """Contact sheet: one row per evenly spaced frame, showing the frame | its overlay.

    Tiles are scaled to `tile_width` so a 1080p video still gives a preview
    that opens instantly.
    """
    if len(frames) != len(labels_list) or not frames:
        raise ValueError(
            f"need equally many frames and label maps (at least one), got {len(frames)} and {len(labels_list)}"
        )
    picks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(int))
    rows = []
    for i in picks:
        pair = [frames[i], overlay(frames[i], labels_list[i], palette)]
        rows.append(np.concatenate([_fit_width(p, tile_width) for p in pair], axis=1))
    return np.concatenate(rows, axis=0)


def _fit_width(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w == width:
        return image
    height = max(1, round(h * width / w))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
