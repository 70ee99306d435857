"""The one preprocessing path from an image file to a model's input, shared by training, validation,
predict, the report card and export. Written down for deployment on the robot:

1. ``load_rgb``: decode the file as RGB uint8 (EXIF orientation applied, every mode converted; a large
   JPEG is decoded at a reduced scale that keeps both sides >= 2 x the base size).
2. ``to_square``: pad the short side with black to a square (``keep_aspect``; else a plain resize), then
   resize to the run's *base size* ``S`` (``data.image_size``, stored in every trained model file as
   ``base_size``) with OpenCV (area filter when shrinking, bilinear when enlarging). The image cache holds
   this result. Training augments it here, at the base size.
3. ``model_input``: resize ``S x S`` to the model's input size with antialiased bilinear interpolation
   (``torch.nn.functional.interpolate``), scale to 0..1, subtract the model's mean and divide by its std
   (``model.preprocess``), channels-last layout. A model whose ``preprocess.detail_size`` is set (a teacher
   shown only a student's detail) gets the image shrunk to that size first, as ``resize_uint8`` makes the
   student's view, then resized to its input size.

``preprocess_files`` runs all three for a list of files.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn

from distill.models import Preprocess
from distill.models.reparam import RepConvBN


class ImageLoadError(RuntimeError):
    """An image file that cannot be decoded; the message names the file."""


def load_rgb(path: str | Path, min_side: int | None = None) -> np.ndarray:
    """Decode ``path`` as HxWx3 uint8 RGB: EXIF orientation applied; L, LA, P, RGBA, CMYK, I;16 and other
    modes converted (alpha composited on black). ``min_side``: a large JPEG may be decoded at a reduced
    scale whose sides stay >= ``min_side`` (much faster). Raises ``ImageLoadError`` naming the file."""
    try:
        with Image.open(path) as im:
            if min_side is not None and im.format == "JPEG":
                im.draft(im.mode, (min_side, min_side))
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                peak = 65535.0 if arr.max() > 255 else 255.0
                im = Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8), "L")
            elif im.mode == "F":
                arr = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8), "L")
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA")
            if im.mode == "LA":
                im = im.convert("RGBA")
            if im.mode == "RGBA":
                rgb = Image.new("RGB", im.size, (0, 0, 0))
                rgb.paste(im, mask=im.getchannel("A"))
                im = rgb
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as err:
        raise ImageLoadError(f"cannot read image {path}: {type(err).__name__}: {err}") from err
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageLoadError(f"cannot read image {path}: empty image")
    return np.ascontiguousarray(arr)


def load_square(path: str | Path, size: int, keep_aspect: bool = True) -> np.ndarray:
    """``load_rgb`` then ``to_square`` at ``size``: the base image every transform starts from."""
    return to_square(load_rgb(path, min_side=2 * size), size, keep_aspect)


def to_square(image: np.ndarray, size: int, keep_aspect: bool = True) -> np.ndarray:
    """HxWx3 uint8 -> size x size x 3 uint8. ``keep_aspect``: pad the short side with black first."""
    if keep_aspect:
        h, w = image.shape[:2]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        image = cv2.copyMakeBorder(image, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=0)
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def channels_last(model: nn.Module) -> nn.Module:
    """Put a model's 4-D weights in channels-last layout (NHWC), the faster CPU convolutions for the EfficientNet
    teacher (``benchmarks/teacher_layout.py``); the same values, the same state dict keys. A student in its branched
    training form (``rep``) stays contiguous: a CPU conv kernel's backward stalls on it in channels-last
    (``benchmarks/results/engineering.md``)."""
    if any(isinstance(m, RepConvBN) for m in model.modules()):
        return model
    return model.to(memory_format=torch.channels_last)


def unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in 0..1; a float batch is taken to be in 0..1 already."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``B x 3 x S x S`` -> uint8 at ``size`` with the antialiased bilinear resize of ``model_input``,
    computed by torch's uint8 kernel (fixed point, channels-last; its speed against the float path:
    ``benchmarks/fill_parts.py``; its pixels are within one grey level of the float resize rounded). A float batch
    is resized the same way, in float."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    x = images.contiguous(memory_format=torch.channels_last)
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def model_input(images: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """uint8 (or 0..1 float) ``B x 3 x S x S`` -> float input for a model: resized to its size, normalised,
    channels-last. At the model's size a uint8 batch takes the layout change on its bytes, then one
    multiply-add ``x * 1/(255 std) - mean/std`` (five full-size float passes before). ``preprocess.detail_size``:
    the batch is shrunk to it first (when larger)."""
    size, detail = preprocess.input_size, preprocess.detail_size
    if detail is not None and (images.shape[-1] > detail or images.shape[-2] > detail):
        images = resize_uint8(images, detail)
    mean = torch.tensor(preprocess.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, device=images.device).view(1, 3, 1, 1)
    if images.shape[-1] == size and images.shape[-2] == size:
        pixel = 255.0 if images.dtype == torch.uint8 else 1.0
        x = images.contiguous(memory_format=torch.channels_last).float()
        return torch.addcmul(-mean / std, x, 1.0 / (pixel * std)).contiguous(memory_format=torch.channels_last)
    x = F.interpolate(unit_float(images), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def preprocess_files(paths: list[str | Path], base_size: int, preprocess: Preprocess,
                     keep_aspect: bool = True) -> torch.Tensor:
    """Model input for image files: ``load_square`` at the base size, then ``model_input``."""
    images = np.stack([load_square(p, base_size, keep_aspect) for p in paths])
    return model_input(torch.from_numpy(images).permute(0, 3, 1, 2), preprocess)
