"""Synthetic fundus images with optic disc labels, in PaddleSeg's layout.

For machines without the real data (tools/prepare_data.py --synthetic, the demo, the tests).
The images are made hard on purpose, so that model capacity matters: uneven illumination
and a broad pale glare make the same tissue bright in one corner and dark in another,
exudate-like spots are as bright as the disc, and vessels cross the disc (docs/recipes.md
gives the threshold baselines). Same N and seed give byte-identical files on one machine;
another CPU's OpenCV may round a few float pixels differently.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import cv2
import numpy as np

from paddleseg_ext.datasets.layout import (
    IMAGE_DIR,
    LABEL_DIR,
    LIST_FILES,
    PrepareDataError,
    prepare_out_dir,
)

JPEG_QUALITY = 95
# cv2 drawing takes integer coordinates; a fixed-point shift keeps sub-pixel precision.
DRAW_SHIFT = 4
DRAW_SCALE = 1 << DRAW_SHIFT


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a coarse random grid upsampled smoothly."""
    grid = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _ellipse_layer(h: int, w: int, center, axes, angle: float) -> np.ndarray:
    """Filled ellipse as a float32 0/1 layer (sub-pixel placement)."""
    layer = np.zeros((h, w), np.uint8)
    cv2.ellipse(
        layer,
        (int(center[0] * DRAW_SCALE), int(center[1] * DRAW_SCALE)),
        (max(1, int(axes[0] * DRAW_SCALE)), max(1, int(axes[1] * DRAW_SCALE))),
        angle,
        0,
        360,
        1,
        -1,
        cv2.LINE_8,
        DRAW_SHIFT,
    )
    return layer.astype(np.float32)


def _blend(image: np.ndarray, color, alpha: np.ndarray) -> np.ndarray:
    """Paint color over image with per-pixel alpha in [0, 1]."""
    a = alpha[..., None]
    return image * (1.0 - a) + np.asarray(color, np.float32) * a


def _vessel_path(
    rng: np.random.Generator, start, heading: float, n_steps: int, step: float, inside
) -> np.ndarray:
    """A smoothly bending random walk from start, stopped where it leaves the retina."""
    points = [np.asarray(start, np.float64)]
    bend = rng.uniform(-0.03, 0.03)
    for _ in range(n_steps):
        bend = np.clip(bend + rng.normal(0.0, 0.006), -0.04, 0.04)
        heading += bend
        nxt = points[-1] + step * np.array([np.cos(heading), np.sin(heading)])
        if not inside(nxt):
            break
        points.append(nxt)
    return np.asarray(points)


def _draw_vessel_tree(
    layer: np.ndarray,
    rng: np.random.Generator,
    start,
    heading: float,
    length: int,
    step: float,
    thickness: int,
    inside,
) -> None:
    """Draw one vessel and, recursively, thinner branches off it into an 8-bit alpha layer."""
    path = _vessel_path(rng, start, heading, length, step, inside)
    if len(path) < 2:
        return
    cv2.polylines(
        layer,
        [np.round(path * DRAW_SCALE).astype(np.int32)],
        False,
        255,
        thickness,
        cv2.LINE_AA,
        DRAW_SHIFT,
    )
    if thickness > 1 and len(path) > 6:
        for _ in range(rng.integers(1, 3)):
            at = rng.integers(len(path) // 4, len(path) - 2)
            branch_heading = heading + rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.0)
            _draw_vessel_tree(
                layer, rng, path[at], branch_heading, length // 2, step, thickness - 1, inside
            )


def _vessel_layer(
    rng: np.random.Generator, h: int, w: int, disc_c, disc_r: float, inside
) -> np.ndarray:
    """Vessel alpha in [0, 1]: arcades radiating from the disc plus a few stray ones."""
    layer = np.zeros((h, w), np.uint8)
    short = min(h, w)
    step = max(1.5, short / 60)
    thick = max(1, int(round(short / 80)))
    n_main = rng.integers(3, 7)
    for k in range(n_main):
        heading = 2 * np.pi * k / n_main + rng.normal(0, 0.3)
        start = (disc_c[0] + rng.normal(0, 0.2 * disc_r), disc_c[1] + rng.normal(0, 0.2 * disc_r))
        _draw_vessel_tree(
            layer,
            rng,
            start,
            heading,
            int(rng.uniform(0.5, 1.1) * short / step),
            step,
            thick + int(rng.random() < 0.5),
            inside,
        )
    for _ in range(rng.integers(1, 4)):
        start = (rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h)
        _draw_vessel_tree(
            layer,
            rng,
            start,
            rng.uniform(0, 2 * np.pi),
            int(0.4 * short / step),
            step,
            max(1, thick - 1),
            inside,
        )
    return layer.astype(np.float32) / 255.0


def _illumination(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, ret_c, ret_ax
) -> np.ndarray:
    """Multiplicative light field: a tilted gradient, an off-centre vignette and slow blotches."""
    h, w = xx.shape
    light_angle = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - w / 2) * np.cos(light_angle) + (yy - h / 2) * np.sin(light_angle)) / (
        0.5 * min(h, w)
    )
    vig_c = (ret_c[0] + rng.normal(0, 0.15 * w), ret_c[1] + rng.normal(0, 0.15 * h))
    vig_r2 = ((xx - vig_c[0]) / ret_ax[0]) ** 2 + ((yy - vig_c[1]) / ret_ax[1]) ** 2
    # Built in log space: stays positive and smooth, where clipping would leave visible kinks.
    log_light = (
        rng.uniform(0.15, 0.4) * ramp
        - rng.uniform(0.15, 0.45) * vig_r2
        + 0.12 * _smooth_field(rng, h, w, 4)
    )
    return np.exp(log_light)


def render_fundus(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one fundus-like RGB uint8 image and its 0/1 optic-disc label."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    short = float(min(h, w))

    # Retina: a large ellipse filling most of the frame, sometimes clipped by its edges.
    ret_c = (w / 2 + rng.uniform(-0.04, 0.04) * w, h / 2 + rng.uniform(-0.04, 0.04) * h)
    ret_ax = (rng.uniform(0.44, 0.54) * w, rng.uniform(0.44, 0.54) * h)
    ret_norm = ((xx - ret_c[0]) / ret_ax[0]) ** 2 + ((yy - ret_c[1]) / ret_ax[1]) ** 2
    retina = cv2.GaussianBlur((ret_norm <= 1.0).astype(np.float32), (0, 0), 0.012 * short + 0.5)

    def inside_retina(p) -> bool:
        return ((p[0] - ret_c[0]) / ret_ax[0]) ** 2 + ((p[1] - ret_c[1]) / ret_ax[1]) ** 2 < 0.95

    # Reddish-orange background with choroidal texture at two scales.
    base = np.array(
        [rng.uniform(0.68, 0.86), rng.uniform(0.26, 0.40), rng.uniform(0.08, 0.18)], np.float32
    )
    texture = (
        1.0
        + 0.10 * _smooth_field(rng, h, w, 6)
        + 0.06 * _smooth_field(rng, h, w, max(8, int(short / 6)))
    )
    image = base * texture[..., None]

    # Optic disc: varying size, eccentricity, rotation and position inside the retina.
    disc_r = rng.uniform(0.08, 0.16) * short
    disc_ax = (disc_r, disc_r * rng.uniform(0.72, 1.0))
    disc_angle = rng.uniform(0.0, 180.0)
    offset_angle = rng.uniform(0.0, 2 * np.pi)
    offset = rng.uniform(0.0, 0.62)
    disc_c = (
        ret_c[0] + offset * (ret_ax[0] - 1.6 * disc_r) * np.cos(offset_angle),
        ret_c[1] + offset * (ret_ax[1] - 1.6 * disc_r) * np.sin(offset_angle),
    )
    disc_mask = _ellipse_layer(h, w, disc_c, disc_ax, disc_angle)
    label = disc_mask.astype(np.uint8)

    # Soft rim, an uneven pallor across the disc and a paler cup: the boundary is not a step.
    disc_strength = rng.uniform(0.75, 1.0)
    rim_alpha = cv2.GaussianBlur(disc_mask, (0, 0), rng.uniform(0.15, 0.35) * disc_r + 0.5)
    tilt = rng.uniform(0, 2 * np.pi)
    pallor = (
        1.0
        + rng.uniform(0.0, 0.35)
        * ((xx - disc_c[0]) * np.cos(tilt) + (yy - disc_c[1]) * np.sin(tilt))
        / disc_r
    )
    disc_color = (rng.uniform(0.95, 1.0), rng.uniform(0.78, 0.90), rng.uniform(0.45, 0.62))
    image = _blend(image, disc_color, np.clip(rim_alpha * disc_strength * pallor, 0.0, 1.0))
    if rng.random() < 0.5:  # peripapillary atrophy: a faint pale halo just outside the disc
        halo = cv2.GaussianBlur(
            _ellipse_layer(h, w, disc_c, (disc_ax[0] * 1.35, disc_ax[1] * 1.35), disc_angle),
            (0, 0),
            0.3 * disc_r + 0.5,
        )
        image = _blend(image, disc_color, halo * (1.0 - disc_mask) * rng.uniform(0.1, 0.3))
    cup_c = (
        disc_c[0] + rng.uniform(-0.2, 0.2) * disc_r,
        disc_c[1] + rng.uniform(-0.2, 0.2) * disc_r,
    )
    cup_r = rng.uniform(0.3, 0.6) * disc_r
    cup = cv2.GaussianBlur(
        _ellipse_layer(h, w, cup_c, (cup_r, cup_r * rng.uniform(0.7, 1.0)), disc_angle),
        (0, 0),
        0.3 * cup_r + 0.5,
    )
    image = _blend(image, (1.0, 0.93, 0.75), cup * rng.uniform(0.2, 0.6))

    # Exudate-like spots, often clustered, sometimes as bright as the disc: brightness alone is ambiguous.
    spots = np.zeros((h, w), np.float32)
    n_spots = rng.integers(2, 12)
    cluster_c = (rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h)
    for _ in range(n_spots):
        if rng.random() < 0.6:
            c = (
                cluster_c[0] + rng.normal(0, 0.08 * short),
                cluster_c[1] + rng.normal(0, 0.08 * short),
            )
        else:
            c = (rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h)
        r = rng.uniform(0.015, 0.05) * short
        spots = np.maximum(
            spots,
            rng.uniform(0.5, 1.05)
            * _ellipse_layer(h, w, c, (r, r * rng.uniform(0.5, 1.0)), rng.uniform(0, 180)),
        )
    if rng.random() < 0.35:  # one larger pale patch, smaller than the disc but as bright
        r = rng.uniform(0.4, 0.75) * disc_r
        c = (rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h)
        spots = np.maximum(
            spots,
            rng.uniform(0.7, 1.0)
            * _ellipse_layer(h, w, c, (r, r * rng.uniform(0.5, 1.0)), rng.uniform(0, 180)),
        )
    spots = cv2.GaussianBlur(spots, (0, 0), rng.uniform(0.4, 1.2))
    image = _blend(
        image,
        (1.0, rng.uniform(0.85, 0.95), rng.uniform(0.45, 0.65)),
        np.clip(spots * disc_strength, 0.0, 1.0) * (1.0 - disc_mask),
    )

    # Dark-red vessels, drawn over the disc too.
    vessel_alpha = _vessel_layer(rng, h, w, disc_c, disc_r, inside_retina) * rng.uniform(0.45, 0.75)
    image = _blend(
        image,
        (rng.uniform(0.35, 0.5), rng.uniform(0.04, 0.1), rng.uniform(0.03, 0.08)),
        vessel_alpha,
    )

    # Uneven illumination and a broad pale glare.
    image = image * _illumination(rng, xx, yy, ret_c, ret_ax)[..., None]
    if rng.random() < 0.6:
        glare_c = (rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h)
        glare_s = rng.uniform(0.12, 0.3) * short
        glare = np.exp(-((xx - glare_c[0]) ** 2 + (yy - glare_c[1]) ** 2) / (2 * glare_s**2))
        image = image + (rng.uniform(0.1, 0.35) * glare)[..., None] * np.array(
            [1.0, 0.85, 0.6], np.float32
        )

    # Dark surround, then camera-like colour/contrast jitter and sensor noise.
    surround = rng.uniform(0.01, 0.05)
    image = image * retina[..., None] + surround * (1.0 - retina[..., None])
    image = image * rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    mean = image.mean()
    image = (image - mean) * rng.uniform(0.8, 1.2) + mean + rng.uniform(-0.05, 0.05)
    image = np.clip(image, 0.0, 1.0) ** rng.uniform(0.8, 1.25)
    image = image + rng.normal(0.0, rng.uniform(0.01, 0.035), size=image.shape)
    rgb = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return rgb, label


def _write_image(job) -> str:
    """Renders and writes one image and its label; returns its list line."""
    out_dir, seed, index, width, min_size, max_size = job
    # One generator per image: an image depends only on (seed, index), not on n or order.
    rng = np.random.default_rng([seed, index])
    h, w = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    rgb, label = render_fundus(rng, h, w)
    stem = f'{index:0{width}d}'
    image_rel, label_rel = f'{IMAGE_DIR}/{stem}.jpg', f'{LABEL_DIR}/{stem}.png'
    cv2.imwrite(
        str(out_dir / image_rel),
        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
    )
    cv2.imwrite(str(out_dir / label_rel), label)
    return f'{image_rel} {label_rel}'


def make_synthetic(
    out_dir,
    n: int,
    seed: int,
    val_fraction: float = 0.2,
    min_size: int = 96,
    max_size: int = 160,
    force: bool = False,
    workers: int = 1,
) -> dict:
    """Write n synthetic fundus images in PaddleSeg's layout; return counts for a summary.
    workers > 1 renders in that many processes: the same files, sooner."""
    if n < 1:
        raise PrepareDataError(f'--synthetic must be at least 1, got {n}')
    if not 0.0 <= val_fraction < 1.0:
        raise PrepareDataError(f'--val_fraction must be in [0, 1), got {val_fraction}')
    if not 16 <= min_size <= max_size:
        raise PrepareDataError(
            f'need 16 <= --min_size <= --max_size, got {min_size} and {max_size}'
        )
    out_dir = Path(out_dir)
    prepare_out_dir(out_dir, force)
    (out_dir / IMAGE_DIR).mkdir()
    (out_dir / LABEL_DIR).mkdir()

    width = max(4, len(str(n)))
    jobs = [(out_dir, seed, index, width, min_size, max_size) for index in range(1, n + 1)]
    if workers > 1:
        # Closed, not terminated: the workers exit on their own, so a signal handler
        # inherited from the parent (paddle installs one) has nothing to report.
        pool = multiprocessing.get_context('fork').Pool(workers)
        try:
            lines = pool.map(_write_image, jobs, chunksize=16)
        finally:
            pool.close()
            pool.join()
    else:
        lines = [_write_image(job) for job in jobs]

    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)  # keep both splits non-empty
    val_ids = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    train = [line for i, line in enumerate(lines) if i not in val_ids]
    val = [line for i, line in enumerate(lines) if i in val_ids]
    for name, subset in zip(LIST_FILES, (train, val, val)):
        (out_dir / name).write_text(''.join(f'{line}\n' for line in subset), encoding='utf-8')
    return {'n': n, 'train': len(train), 'val': len(val)}


# ---------------------------------------------------------------------------
# CLI
