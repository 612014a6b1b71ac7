"""Synthetic driving videos with exact ground-truth label maps (Cityscapes train ids).

A camera drives down a straight street and turns its head (yaw) and drifts between lanes;
the scene is a ground plane (road with dashed lane markings, sidewalks, grass), facades and
hedges along both sides, poles, parked and moving cars, walking pedestrians, and a sky.
Everything is ray-cast per pixel column/row with numpy, so labels are exactly the shapes
that were drawn: every pixel's class is decided by the same test that decides its colour.
Lighting changes over time; objects occlude each other by depth.

Deterministic per seed. A few hundred 256x512 frames per second on one core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Cityscapes train ids of the classes the generator draws (others never appear).
ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, TERRAIN, SKY, PERSON, CAR = 0, 1, 2, 5, 8, 9, 10, 11, 13
NUM_CLASSES = 19
USED_CLASSES = (ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, TERRAIN, SKY, PERSON, CAR)

CAMERA_HEIGHT = 1.5
ROAD_HALF = 7.0  # two lanes each way
SIDEWALK_WIDTH = 3.0
FACADE_X = ROAD_HALF + SIDEWALK_WIDTH + 3.0  # a strip of lawn (terrain) before the facades
_GROUND_LABELS = np.array([ROAD, SIDEWALK, TERRAIN], np.uint8)
_GROUND_COLOURS = np.array([(90, 90, 96), (175, 160, 150), (95, 150, 70)], np.float32)


@dataclass(frozen=True)
class _Box:
    """An upright box seen as its camera-facing rectangle: lateral x, forward z, size, speed."""

    x: float
    z: float
    width: float
    height: float
    speed: float  # metres per frame along z (world)
    colour: tuple[int, int, int]
    label: int


def _scene(rng: np.random.Generator, num_frames: int) -> dict:
    """Random but fixed scene layout: facades, hedges, poles, cars, pedestrians, motion."""
    length = 60.0 + 1.6 * num_frames + 120.0
    sides = {}
    for side in (-1, 1):
        edges = np.cumsum(rng.uniform(6.0, 18.0, size=int(length / 6) + 4)) - 10.0
        kinds = rng.random(len(edges)) < 0.75  # facade, else hedge (vegetation)
        heights = np.where(kinds, rng.uniform(6.0, 22.0, len(edges)), rng.uniform(1.2, 2.5, len(edges)))
        colours = rng.integers(90, 200, size=(len(edges), 3))
        sides[side] = (edges, kinds, heights, colours)
    boxes = []
    for _ in range(rng.integers(5, 10)):  # cars: parked at the kerb or driving in a lane
        lane = rng.choice([-5.2, -1.8, 1.8, 5.2, -6.4, 6.4])
        parked = abs(lane) > 6
        boxes.append(
            _Box(
                float(lane),
                float(rng.uniform(8, length * 0.7)),
                1.9,
                1.5,
                0.0 if parked else float(rng.uniform(-1.2, 0.9) if lane < 0 else rng.uniform(0.4, 1.6)),
                tuple(int(c) for c in rng.integers(30, 230, 3)),
                CAR,
            )
        )
    for _ in range(rng.integers(3, 8)):  # pedestrians walking on the sidewalks
        side = rng.choice([-1, 1])
        boxes.append(
            _Box(
                float(side * rng.uniform(ROAD_HALF + 0.6, ROAD_HALF + SIDEWALK_WIDTH - 0.4)),
                float(rng.uniform(5, length * 0.7)),
                0.7,
                1.8,
                float(rng.uniform(-0.15, 0.15)),
                tuple(int(c) for c in rng.integers(20, 250, 3)),
                PERSON,
            )
        )
    for z in np.arange(rng.uniform(3, 15), length, rng.uniform(18, 30)):  # poles at the kerb
        for side in (-1, 1):
            boxes.append(_Box(side * (ROAD_HALF + 0.3), float(z), 0.35, 5.0, 0.0, (120, 120, 125), POLE))
    return {
        "sides": sides,
        "boxes": boxes,
        "speed": float(rng.uniform(0.8, 1.6)),  # camera metres per frame
        "yaw_amp": float(rng.uniform(0.03, 0.15)),
        "yaw_freq": float(rng.uniform(0.02, 0.06)),
        "drift": float(rng.uniform(0.5, 3.0)),
        "phase": float(rng.uniform(0, 2 * np.pi)),
        "light_freq": float(rng.uniform(0.01, 0.05)),
        "tint": rng.uniform(0.9, 1.1, 3),
    }


def render_scene(seed: int, num_frames: int, height: int = 256, width: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 [T, H, W, 3] RGB, labels uint8 [T, H, W] Cityscapes train ids) for ``seed``."""
    if num_frames < 1 or height < 32 or width < 32:
        raise ValueError(f"need num_frames >= 1 and frames of at least 32x32, got {num_frames}x{height}x{width}")
    rng = np.random.default_rng(seed)
    scene = _scene(rng, num_frames)
    noise = rng.normal(0.0, 6.0, size=(height, width, 1)).astype(np.float32)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    labels = np.empty((num_frames, height, width), np.uint8)
    for t in range(num_frames):
        frames[t], labels[t] = _render_frame(scene, t, height, width, noise)
    return frames, labels


@dataclass(frozen=True, eq=False)
class _View:
    """One frame's camera: its pose, the pinhole projection, and the pixel grid every layer casts rays from."""

    h: int
    w: int
    f: float  # focal length in pixels
    cx: float
    horizon: float  # image row of the horizon (bobs a little with t)
    cam_x: float
    cam_z: float
    cos_y: float
    sin_y: float
    rows: np.ndarray  # float32 [H, 1]: pixel-centre rows
    a: np.ndarray  # float32 [1, W]: ray slope of each column in the camera frame


@dataclass(frozen=True, eq=False)
class _Canvas:
    """The frame being painted: colour, label and depth per pixel; each layer paints only where it is nearest."""

    colour: np.ndarray  # float32 [H, W, 3]
    label: np.ndarray  # uint8 [H, W]
    depth: np.ndarray  # float32 [H, W], inf where nothing but sky


def _render_frame(scene: dict, t: int, h: int, w: int, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``t``: sky, ground, facades and hedges, boxes far to near, then lighting and sensor noise."""
    view = _view(scene, t, h, w)
    canvas = _sky(view)
    _paint_ground(view, canvas)
    _paint_sides(view, scene["sides"], canvas)
    _paint_boxes(view, scene["boxes"], t, canvas)
    return _expose(scene, t, canvas.colour, noise), canvas.label


def _view(scene: dict, t: int, h: int, w: int) -> _View:
    """The camera at frame ``t``: it yaws, drifts between lanes, drives forward, and the horizon bobs."""
    f = 0.8 * w
    # Python floats, not numpy float64 scalars: those would promote every float32 array to float64.
    yaw = scene["yaw_amp"] * math.sin(scene["yaw_freq"] * 2 * math.pi * t + scene["phase"])
    cam_x = scene["drift"] * math.sin(0.5 * scene["yaw_freq"] * 2 * math.pi * t + scene["phase"])
    cam_z = scene["speed"] * t
    horizon = 0.42 * h + 0.01 * h * math.sin(0.3 * t)
    cx = w / 2.0
    cos_y, sin_y = math.cos(yaw), math.sin(yaw)

    rows = np.arange(h, dtype=np.float32)[:, None] + 0.5
    cols = np.arange(w, dtype=np.float32)[None, :] + 0.5
    a = (cols - cx) / f
    return _View(h, w, f, cx, horizon, cam_x, cam_z, cos_y, sin_y, rows, a)


def _sky(view: _View) -> _Canvas:
    """A fresh canvas that is all sky: a vertical gradient, infinitely far away."""
    h, w = view.h, view.w
    mix = np.clip(view.rows / max(view.horizon, 1.0), 0, 1)[..., None]
    colour = np.empty((h, w, 3), np.float32)
    colour[:] = (1 - mix) * np.array([70, 120, 200], np.float32) + mix * np.array([180, 205, 235], np.float32)
    label = np.full((h, w), SKY, np.uint8)
    depth = np.full((h, w), np.inf, np.float32)
    return _Canvas(colour, label, depth)


def _paint_ground(view: _View, canvas: _Canvas) -> None:
    """Rows below the horizon: road with lane markings, sidewalk with paving joints, grass beyond."""
    # camera depth of each ground pixel, then its world position
    g0 = int(np.floor(view.horizon + 0.5))
    gr = view.rows[g0:]
    zc = view.f * CAMERA_HEIGHT / np.maximum(gr - view.horizon, 1e-3)  # [hg, 1]
    xc = view.a * zc
    gx = view.cam_x + xc * view.cos_y + zc * view.sin_y
    gz = view.cam_z - xc * view.sin_y + zc * view.cos_y
    ax = np.abs(gx)
    zone = (ax >= ROAD_HALF).astype(np.uint8) + (ax >= ROAD_HALF + SIDEWALK_WIDTH)  # 0 road, 1 sidewalk, 2 grass
    canvas.label[g0:] = _GROUND_LABELS[zone]
    canvas.colour[g0:] = _GROUND_COLOURS[zone]
    gcol = canvas.colour[g0:]
    road, walk = zone == 0, zone == 1
    markings = road & ((np.abs(ax - 3.5 * (ax > 1.75)) < 0.12) & ((gz % 9.0) < 4.5) | (ax < 0.12))
    gcol[markings] = (235, 235, 225)
    gcol[walk & ((gz % 2.0) < 0.08)] = (140, 130, 120)  # paving joints
    canvas.depth[g0:] = zc


def _paint_sides(view: _View, sides: dict, canvas: _Canvas) -> None:
    """Facades and hedges: vertical planes at x = ±FACADE_X, found per column."""
    a, cos_y, sin_y = view.a, view.cos_y, view.sin_y
    dir_x, dir_z = (a * cos_y + sin_y)[0], (-a * sin_y + cos_y)[0]  # world direction of each column's ray
    for side, plane in sides.items():
        _paint_side(view, side, plane, dir_x, dir_z, canvas)


def _paint_side(view: _View, side: int, plane: tuple, dir_x: np.ndarray, dir_z: np.ndarray, canvas: _Canvas) -> None:
    """One side's plane: each column's ray hits one segment (facade or hedge) between its top and the ground."""
    edges, kinds, heights, colours = plane
    f, horizon = view.f, view.horizon
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (side * FACADE_X - view.cam_x) / dir_x  # ray parameter = camera-frame depth
    valid = np.isfinite(s) & (s > 0.5)
    if not valid.any():
        return
    cidx = np.nonzero(valid)[0]
    s, hit_z = s[cidx], view.cam_z + s[cidx] * dir_z[cidx]
    seg = np.clip(np.searchsorted(edges, hit_z), 0, len(edges) - 1)
    top = horizon - f * (heights[seg] - CAMERA_HEIGHT) / s
    bottom = horizon + f * CAMERA_HEIGHT / s
    r0, r1 = max(int(top.min()), 0), min(int(np.ceil(bottom.max())) + 1, view.h)
    if r1 <= r0:
        return
    sub_rows = view.rows[r0:r1]
    inside = (sub_rows >= top) & (sub_rows < bottom) & (s < canvas.depth[r0:r1, cidx])
    pr, pc = np.nonzero(inside)  # only the visible plane pixels are shaded
    ps, pz, pseg = s[pc], hit_z[pc], seg[pc]
    v_world = CAMERA_HEIGHT + (horizon - sub_rows[pr, 0]) * ps / f  # height of the pixel on the plane
    facade = kinds[pseg]
    paint = _side_paint(colours[pseg], facade, pz, v_world)
    rr, cc = pr + r0, cidx[pc]
    canvas.colour[rr, cc] = paint
    canvas.label[rr, cc] = np.where(facade, BUILDING, VEGETATION)
    canvas.depth[rr, cc] = ps


def _side_paint(colours: np.ndarray, facade: np.ndarray, pz: np.ndarray, v_world: np.ndarray) -> np.ndarray:
    """Colours of plane pixels: facades with a grid of darker windows, hedges in a rippled green."""
    window = ((pz % 3.0) < 1.6) & ((v_world % 3.2) > 1.4) & (v_world > 2.5)
    paint = colours.astype(np.float32)
    paint[window] = paint[window] * 0.45 + 20
    hedge = ~facade
    paint[hedge] = np.array([40, 105, 45], np.float32) + 25 * np.sin(pz[hedge] * 2.1 + v_world[hedge] * 5.0)[:, None]
    return paint


def _paint_boxes(view: _View, boxes: list[_Box], t: int, canvas: _Canvas) -> None:
    """Cars, pedestrians and poles in front of the camera, far to near, each inside its screen rectangle."""
    placed = []
    for box in boxes:
        dx, dz = box.x - view.cam_x, box.z + box.speed * t - view.cam_z
        zc_b = float(dx * view.sin_y + dz * view.cos_y)
        if zc_b > 1.0:
            placed.append((zc_b, float(dx * view.cos_y - dz * view.sin_y), box))
    for zc_b, xc_b, box in sorted(placed, key=lambda p: -p[0]):
        _paint_box(view, box, zc_b, xc_b, canvas)


def _paint_box(view: _View, box: _Box, zc_b: float, xc_b: float, canvas: _Canvas) -> None:
    """One box at camera depth ``zc_b`` and lateral ``xc_b``, where nothing nearer was painted."""
    f, cx, horizon = view.f, view.cx, view.horizon
    u0, u1 = cx + f * (xc_b - box.width / 2) / zc_b, cx + f * (xc_b + box.width / 2) / zc_b
    v0, v1 = horizon + f * (CAMERA_HEIGHT - box.height) / zc_b, horizon + f * CAMERA_HEIGHT / zc_b
    c0, c1 = max(int(np.ceil(u0 - 0.5)), 0), min(int(np.ceil(u1 - 0.5)), view.w)
    r0, r1 = max(int(np.ceil(v0 - 0.5)), 0), min(int(np.ceil(v1 - 0.5)), view.h)
    if c1 <= c0 or r1 <= r0:
        return
    visible = zc_b < canvas.depth[r0:r1, c0:c1]
    rel = (view.rows[r0:r1] - v0) / max(v1 - v0, 1e-3)  # 0 at the top of the box, 1 at the ground
    paint = np.broadcast_to(_box_paint(box, rel), (r1 - r0, c1 - c0, 3))
    canvas.colour[r0:r1, c0:c1][visible] = paint[visible]
    canvas.label[r0:r1, c0:c1][visible] = box.label
    canvas.depth[r0:r1, c0:c1][visible] = zc_b


def _box_paint(box: _Box, rel: np.ndarray) -> np.ndarray:
    """Colours of a box's rows ([rows, 1, 3]) from ``rel``, each row's height on the box (0 top, 1 ground)."""
    rgb = np.array(box.colour, np.float32)
    if box.label == CAR:  # a darker window band in the upper part, still "car"
        return np.where(((rel >= 0.1) & (rel < 0.4))[..., None], rgb * 0.35, rgb)
    if box.label == PERSON:  # head, torso, legs in different tones
        return np.where(
            (rel < 0.15)[..., None],
            np.array([200, 160, 130], np.float32),
            np.where((rel < 0.55)[..., None], rgb, rgb * 0.5),
        )
    return np.broadcast_to(rgb, (len(rel), 1, 3))


def _expose(scene: dict, t: int, colour: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Lighting that changes over time, the scene's colour tint and fixed sensor noise, as uint8 RGB."""
    light = 0.85 + 0.2 * math.sin(scene["light_freq"] * 2 * math.pi * t + scene["phase"])
    colour *= (light * scene["tint"]).astype(np.float32)
    colour += noise
    np.clip(colour, 0, 255, out=colour)
    return colour.astype(np.uint8)
