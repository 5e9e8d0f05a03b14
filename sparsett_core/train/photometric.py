"""Extra pair augmentation for small training sets (SparseTT-Lite): colour, blur, grayscale, flips,
static-image pairs, aspect-ratio stretch.

Not part of the official recipe: every probability defaults to 0, and with the defaults
:meth:`PairAugment.enabled` is False and the data pipeline draws no random number here, so the
official recipe's pairs are unchanged. ``data.augment`` in a training YAML switches them on
(``config/train/lite.yaml``).

Two hooks of :class:`sparsett_core.train.data.PairDataset`, both drawing from the pair's own
generator (so runs stay reproducible and resumable):

* :class:`~sparsett_core.train.data.PairDataset` -- with ``paste_prob``, a positive pair's search
  frame becomes a synthetic-motion frame (:func:`paste_target`: the target pasted into a frame of
  another sequence).
* :func:`before_crop` -- a positive pair becomes a *static-image pair* (search frame = template
  frame; the search crop's scale/shift augmentation still moves and scales the target) with
  probability ``static_prob``; then, with ``stretch_prob``, both frames are stretched by the same
  aspect factor (width x a, height / a), so that the box head sees target shapes the few training
  sequences lack (tall pedestrians, wide cars).
* :func:`after_crop` -- on the uint8 BGR crops: horizontal flip of both crops (and the search
  box) with ``flip_prob``; grayscale of both with ``gray_prob``; per-crop colour jitter
  (brightness, contrast, saturation) with ``color_prob``; Gaussian or motion blur of the search
  crop with ``blur_prob``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class PairAugment:
    """Probabilities and strengths of the extra augmentation (all off by default).

    Attributes:
        static_prob: probability that a positive pair uses one frame for both crops.
        flip_prob: probability of flipping both crops horizontally.
        gray_prob: probability of turning both crops to grayscale.
        color_prob: probability, per crop, of a colour jitter.
        brightness, contrast, saturation: jitter ranges: factors drawn from U(1 - r, 1 + r).
        blur_prob: probability of blurring the search crop (Gaussian or linear motion blur).
        max_blur: largest blur kernel size in pixels (odd sizes from 3 up to it).
        stretch_prob: probability of stretching both frames of a pair to another aspect ratio.
        max_stretch: largest stretch: ``log a ~ U(-log m, log m)``, width x a, height / a.
        paste_prob: probability that a positive pair's search frame becomes a *synthetic motion*
            frame: the target, cut from its search frame, pasted at another place and scale into a
            frame of another sequence (:func:`paste_target`).
    """

    static_prob: float = 0.0
    flip_prob: float = 0.0
    gray_prob: float = 0.0
    color_prob: float = 0.0
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    blur_prob: float = 0.0
    max_blur: int = 9
    stretch_prob: float = 0.0
    max_stretch: float = 1.5
    paste_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("static_prob", "flip_prob", "gray_prob", "color_prob", "blur_prob", "stretch_prob", "paste_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"data.augment.{name} must be in [0, 1], got {value}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"data.augment.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.max_blur < 3:
            raise ValueError(f"data.augment.max_blur must be >= 3, got {self.max_blur}")
        if not 1.0 <= self.max_stretch <= 4.0:
            raise ValueError(f"data.augment.max_stretch must be in [1, 4], got {self.max_stretch}")

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is on (False: the hooks are skipped, no random draws)."""
        return any((self.static_prob, self.flip_prob, self.gray_prob, self.color_prob, self.blur_prob,
                    self.stretch_prob, self.paste_prob))


def stretch(image: np.ndarray, box: np.ndarray, a: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize a frame to width x a, height / a, and its "+1" corner box with it.

    Args:
        image: (H, W, 3) uint8 frame.
        box: (4,) corners x0, y0, x1, y1 ("+1" convention: w = x1 - x0 + 1).
        a: aspect factor (> 0).
    Returns:
        the resized frame (H', W', 3) and its box (4,) float64.
    """
    h, w = image.shape[:2]
    new_w, new_h = max(1, round(w * a)), max(1, round(h / a))
    fx, fy = new_w / w, new_h / h
    out = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR if a > 1 else cv2.INTER_AREA)
    # pixel centres map as x' = (x + 0.5) * f - 0.5; the "+1" width scales by f exactly
    x0, y0 = (box[0] + 0.5) * fx - 0.5, (box[1] + 0.5) * fy - 0.5
    bw, bh = (box[2] - box[0] + 1) * fx, (box[3] - box[1] + 1) * fy
    return out, np.array([x0, y0, x0 + bw - 1, y0 + bh - 1], dtype=np.float64)


def paste_target(pair: Any, background: np.ndarray, rng: np.random.Generator) -> Any:
    """Synthetic motion: the search frame's target pasted into ``background`` at a random place and scale.

    The target patch (its box, with a 10 % margin blended into the new frame so that the paste has
    no hard edge) is scaled by a factor in [0.7, 1.4] and put where it fits inside the background
    frame; the template is unchanged. The new search box is exact, so the pair teaches the same
    object on a new background, far from where it was.

    Args:
        pair: a positive :class:`~sparsett_core.train.sampler.Pair`.
        background: (H, W, 3) uint8 frame of another sequence.
    Returns:
        the pair with the new search frame and box (or unchanged if the target cannot be cut).
    """
    x0, y0, x1, y1 = pair.box_x
    H, W = pair.image_x.shape[:2]
    bw, bh = x1 - x0 + 1, y1 - y0 + 1
    mx, my = 0.1 * bw, 0.1 * bh
    a0, b0 = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
    a1, b1 = int(min(W, np.ceil(x1 + mx + 1))), int(min(H, np.ceil(y1 + my + 1)))
    if a1 - a0 < 4 or b1 - b0 < 4:
        return pair
    patch = pair.image_x[b0:b1, a0:a1]
    bgh, bgw = background.shape[:2]
    s = float(rng.uniform(0.7, 1.4))
    s = min(s, 0.9 * bgw / patch.shape[1], 0.9 * bgh / patch.shape[0])
    pw, ph = max(4, round(patch.shape[1] * s)), max(4, round(patch.shape[0] * s))
    patch = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_LINEAR)
    ox, oy = int(rng.integers(0, bgw - pw + 1)), int(rng.integers(0, bgh - ph + 1))
    # feathered alpha over the margin: 1 inside the target box, falling to 0 at the patch border
    fx, fy = pw / (a1 - a0), ph / (b1 - b0)
    ramp_x = np.clip(np.minimum(np.arange(pw) + 0.5, pw - np.arange(pw) - 0.5) / max(mx * fx, 1.0), 0, 1)
    ramp_y = np.clip(np.minimum(np.arange(ph) + 0.5, ph - np.arange(ph) - 0.5) / max(my * fy, 1.0), 0, 1)
    alpha = (ramp_y[:, None] * ramp_x[None, :])[..., None]
    out = background.copy()
    region = out[oy:oy + ph, ox:ox + pw].astype(np.float32)
    out[oy:oy + ph, ox:ox + pw] = (alpha * patch + (1 - alpha) * region).astype(np.uint8)
    nx0, ny0 = ox + (x0 - a0) * fx, oy + (y0 - b0) * fy
    box = np.array([nx0, ny0, nx0 + bw * fx - 1, ny0 + bh * fy - 1], dtype=np.float64)
    return replace(pair, image_x=out, box_x=box)


def before_crop(pair: Any, rng: np.random.Generator, aug: PairAugment) -> Any:
    """Static-image pair and aspect-ratio stretch, on the frames before cropping.

    Args:
        pair: a :class:`sparsett_core.train.sampler.Pair` (not modified).
        rng: the pair's generator.
        aug: the augmentation settings.
    Returns:
        the pair, or a changed copy: a static pair's search frame is the template frame; a
        stretched pair has both frames (and boxes) stretched by one common factor.
    """
    if not aug.enabled:
        return pair
    if rng.random() < aug.static_prob and not pair.negative:
        pair = replace(pair, image_x=pair.image_z, box_x=pair.box_z.copy())
    if aug.stretch_prob > 0:  # draws only when on, so older recipes keep their pairs
        u, v = rng.random(2)
        if u < aug.stretch_prob:
            a = float(np.exp((2 * v - 1) * np.log(aug.max_stretch)))
            image_z, box_z = stretch(pair.image_z, pair.box_z, a)
            image_x, box_x = stretch(pair.image_x, pair.box_x, a)
            pair = replace(pair, image_z=image_z, box_z=box_z, image_x=image_x, box_x=box_x)
    return pair


def color_jitter(crop: np.ndarray, rng: np.random.Generator, aug: PairAugment) -> np.ndarray:
    """Brightness, contrast and saturation jitter of a (H, W, 3) uint8 BGR crop (random order-free)."""
    img = crop.astype(np.float32)
    b = rng.uniform(1 - aug.brightness, 1 + aug.brightness)
    c = rng.uniform(1 - aug.contrast, 1 + aug.contrast)
    s = rng.uniform(1 - aug.saturation, 1 + aug.saturation)
    img = img * b
    gray = img @ np.array([0.114, 0.587, 0.299], dtype=np.float32)  # BGR luma, (H, W)
    img = gray.mean() + (img - gray.mean()) * c
    gray = img @ np.array([0.114, 0.587, 0.299], dtype=np.float32)
    img = gray[..., None] + (img - gray[..., None]) * s
    return np.clip(img, 0, 255).astype(np.uint8)


def to_gray(crop: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> the same shape with three equal channels."""
    return cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def blur(crop: np.ndarray, rng: np.random.Generator, aug: PairAugment) -> np.ndarray:
    """Gaussian blur or a linear motion blur at a random angle, odd kernel in [3, max_blur]."""
    k = int(rng.integers(1, aug.max_blur // 2 + 1)) * 2 + 1
    if rng.random() < 0.5:
        return cv2.GaussianBlur(crop, (k, k), 0)
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    kernel /= max(float(kernel.sum()), 1e-6)
    return cv2.filter2D(crop, -1, kernel)


def after_crop(crop_z: np.ndarray, crop_x: np.ndarray, box_x: np.ndarray, rng: np.random.Generator,
               aug: PairAugment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augment the two uint8 BGR crops of a pair.

    Args:
        crop_z: (127, 127, 3) template crop; crop_x: (289, 289, 3) search crop.
        box_x: (4,) search box x0, y0, x1, y1 in crop pixels ("+1" corners).
        rng: the pair's generator.
        aug: the augmentation settings.
    Returns:
        crop_z, crop_x, box_x (new arrays where changed; the box is mirrored by a flip).
    """
    if not aug.enabled:
        return crop_z, crop_x, box_x
    u = rng.random(5)  # fixed number of draws, whatever is applied
    if u[0] < aug.flip_prob:
        crop_z, crop_x = crop_z[:, ::-1].copy(), crop_x[:, ::-1].copy()
        side = crop_x.shape[1]
        box_x = np.array([side - 1 - box_x[2], box_x[1], side - 1 - box_x[0], box_x[3]], dtype=np.float64)
    if u[1] < aug.gray_prob:
        crop_z, crop_x = to_gray(crop_z), to_gray(crop_x)
    else:
        if u[2] < aug.color_prob:
            crop_z = color_jitter(crop_z, rng, aug)
        if u[3] < aug.color_prob:
            crop_x = color_jitter(crop_x, rng, aug)
    if u[4] < aug.blur_prob:
        crop_x = blur(crop_x, rng, aug)
    return crop_z, crop_x, box_x


__all__ = ["PairAugment", "after_crop", "before_crop", "blur", "color_jitter", "paste_target", "stretch", "to_gray"]
