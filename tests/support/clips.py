"""A cheap deterministic driving-like clip: structure and motion for decoder and CLI tests."""

from __future__ import annotations

import numpy as np


def generate_demo_clip(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic synthetic driving-like clip [T, H, W, 3] uint8 for demos and tests.

    Sky gradient, grass verge, a road trapezoid with lane dashes that move
    towards the camera, and a few coloured boxes ("cars") driving across. It
    gives a segmentation model real structure and motion without shipping
    video files; everything is broadcast numpy over [T, H, W], so a few dozen
    frames take milliseconds.
    """
    if num_frames < 1 or height < 8 or width < 8:
        raise ValueError(f"need num_frames >= 1 and a frame of at least 8x8, got {num_frames}x{height}x{width}")
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames, dtype=np.float32)[:, None, None]
    y = np.arange(height, dtype=np.float32)[None, :, None]
    x = np.arange(width, dtype=np.float32)[None, None, :]
    horizon = 0.42 * height
    below = np.clip((y - horizon) / (height - horizon), 0.0, 1.0)  # 0 at horizon, 1 at bottom

    # sky: light blue at the horizon to deep blue at the top; grass below the horizon
    sky_mix = np.clip(y / horizon, 0.0, 1.0)
    sky = (
        np.array([60, 110, 200], np.float32) * (1 - sky_mix[..., None])
        + np.array([170, 200, 235], np.float32) * sky_mix[..., None]
    )
    grass = np.array([70, 130, 60], np.float32) * (0.75 + 0.25 * below[..., None])
    img = np.where((y < horizon)[..., None], sky, grass)
    img = np.broadcast_to(img, (num_frames, height, width, 3)).copy()

    # road: a trapezoid whose half-width grows linearly from the horizon to the bottom
    centre = width / 2.0
    half = (0.04 + 0.46 * below) * width
    road = (y >= horizon) & (np.abs(x - centre) <= half)
    img[np.broadcast_to(road, img.shape[:3])] = (95, 95, 100)

    # lane dashes on the centre line; depth ~ 1/below, so dashes speed up near the camera
    depth = 1.0 / np.maximum(below, 1e-3)
    dash_on = ((depth * 0.9 + t * 0.35) % 1.0) < 0.5
    lane = road & (np.abs(x - centre) <= np.maximum(1.0, 0.012 * width * below)) & dash_on & (below > 0.02)
    img[lane] = (235, 235, 220)

    # cars: boxes at fixed depths, moving sideways and wrapping around the frame
    for _ in range(3):
        depth_pos = rng.uniform(0.25, 0.9)
        car_h = max(2.0, 0.22 * depth_pos * height)
        car_w = car_h * rng.uniform(1.4, 2.0)
        bottom = horizon + depth_pos * (height - horizon)
        speed = rng.uniform(-0.04, 0.04) * width
        left = (rng.uniform(0, width) + speed * t) % (width + car_w) - car_w
        colour = rng.integers(40, 256, size=3)
        car = (y <= bottom) & (y > bottom - car_h) & (x >= left) & (x < left + car_w)
        img[car] = colour

    noise = rng.normal(0.0, 3.0, size=(1, height, width, 1)).astype(np.float32)
    return np.clip(img + noise, 0, 255).astype(np.uint8)
