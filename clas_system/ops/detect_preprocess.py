"""PaddleDetection's deploy preprocessing: `build_detect_preprocess(ops)` -> one callable
HWC RGB uint8 image -> DetectorInput.

Same arithmetic as PaddleDetection's deploy/python/preprocess.py (cv2 resize by fx/fy, float32
normalisation, zero padding to the stride). Each step maps (image, (im_shape, scale_factor)) to
the same pair; the model divides its boxes by scale_factor, so they come out in the original
image's pixels.
"""
import dataclasses
import math
from typing import Tuple

import cv2
import numpy as np

from params import detector as det_ops

from ..errors import PreprocessError


@dataclasses.dataclass(frozen=True)
class DetectorInput:
    """One preprocessed image: what the model is fed, and the size its boxes are clipped to."""
    tensor: np.ndarray  # CHW float32
    im_shape: np.ndarray  # [height, width] after resizing, float32
    scale_factor: np.ndarray  # [scale_y, scale_x], float32
    image_size: Tuple[int, int]  # (height, width) of the original image


def resize_scales(op, height, width):
    """(scale_y, scale_x) as PaddleDetection's Resize.generate_scale."""
    target_h, target_w = op.target_size
    if not op.keep_ratio:
        return target_h / float(height), target_w / float(width)
    target_min, target_max = min(op.target_size), max(op.target_size)
    scale = float(target_min) / min(height, width)
    if np.round(scale * max(height, width)) > target_max:
        scale = float(target_max) / max(height, width)
    return scale, scale


def resize_step(op):
    def run(img, geometry):
        height, width = img.shape[:2]
        scale_y, scale_x = resize_scales(op, height, width)
        if round(height * scale_y) < 1 or round(width * scale_x) < 1:
            raise PreprocessError(f"image of {width}x{height} is too thin to resize to {op.target_size}")
        img = cv2.resize(img, None, None, fx=scale_x, fy=scale_y, interpolation=op.interp)
        _, (earlier_y, earlier_x) = geometry
        return img, (img.shape[:2], (earlier_y * scale_y, earlier_x * scale_x))
    return run


def normalize_step(op):
    mean = np.array(op.mean, np.float32).reshape(1, 1, 3)
    std = np.array(op.std, np.float32).reshape(1, 1, 3)

    def run(img, geometry):
        img = img.astype(np.float32)
        if op.is_scale:
            img *= np.float32(1.0 / 255.0)
        if op.norm_type == "mean_std":
            img = (img - mean) / std
        return img, geometry
    return run


def permute_step(_op):
    return lambda img, geometry: (img.transpose((2, 0, 1)), geometry)


def pad_stride_step(op):
    def run(img, geometry):
        if op.stride <= 0:
            return img, geometry
        channels, height, width = img.shape
        padded = np.zeros((channels, math.ceil(height / op.stride) * op.stride,
                           math.ceil(width / op.stride) * op.stride), np.float32)
        padded[:, :height, :width] = img
        return padded, geometry
    return run


STEP_BUILDERS = {
    det_ops.DetResize: resize_step,
    det_ops.DetNormalizeImage: normalize_step,
    det_ops.DetPermute: permute_step,
    det_ops.DetPadStride: pad_stride_step,
}


def build_detect_preprocess(ops):
    """Typed detection ops -> callable HWC RGB uint8 image -> DetectorInput."""
    steps = [STEP_BUILDERS[type(op)](op) for op in ops]

    def preprocess(img):
        image_size = img.shape[:2]
        geometry = (image_size, (1.0, 1.0))
        for step in steps:
            img, geometry = step(img, geometry)
        im_shape, scale_factor = geometry
        return DetectorInput(tensor=np.ascontiguousarray(img, np.float32),
                             im_shape=np.array(im_shape, np.float32),
                             scale_factor=np.array(scale_factor, np.float32),
                             image_size=(int(image_size[0]), int(image_size[1])))
    return preprocess
