"""PaddleClas-compatible preprocess ops: `build_preprocess(ops)` -> one callable image -> tensor.

Same arithmetic as PaddleClas's deploy ops (cv2 resize, round() on resize_short, floor-centred
crop, float32 `x * scale - mean) / std`), so the same image and config give the same tensor.
"""
import math

import cv2
import numpy as np
from PIL import Image

from params import ops as op_settings

CV2_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA,
                     "bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}
PIL_INTERPOLATION = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "area": Image.BOX,
                     "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


# A 2000x1 image with resize_short 256 would become 512000x256: refuse such sizes, not swap.
MAX_RESIZED_PIXELS = 40_000_000


class PreprocessError(ValueError):
    """The image does not fit the preprocessing (for example smaller than the crop)."""


def resize_image(op):
    def run(img):
        if op.resize_short is not None:
            h, w = img.shape[:2]
            percent = float(op.resize_short) / min(w, h)
            size = (int(round(w * percent)), int(round(h * percent)))
        else:
            size = op.size
        if size[0] * size[1] > MAX_RESIZED_PIXELS or min(size) < 1:
            raise PreprocessError(f"image of {img.shape[1]}x{img.shape[0]} would resize to {size[0]}x{size[1]}: "
                                  f"its aspect ratio is too extreme for resize_short {op.resize_short}")
        if op.backend == "pil":
            resample = PIL_INTERPOLATION.get(op.interpolation, Image.BILINEAR)
            return np.asarray(Image.fromarray(img).resize(size, resample))
        if op.interpolation is None:
            return cv2.resize(img, size)
        return cv2.resize(img, size, interpolation=CV2_INTERPOLATION[op.interpolation])
    return run


def crop_image(op):
    width, height = op.size

    def run(img):
        img_h, img_w = img.shape[:2]
        if img_h < height or img_w < width:
            raise PreprocessError(f"image of {img_w}x{img_h} is smaller than the {width}x{height} crop")
        top, left = (img_h - height) // 2, (img_w - width) // 2
        return img[top:top + height, left:left + width]
    return run


def normalize_image(op):
    shape = (3, 1, 1) if op.order == "chw" else (1, 1, 3)
    scale = np.float32(op.scale)
    mean = np.array(op.mean, dtype=np.float32).reshape(shape)
    std = np.array(op.std, dtype=np.float32).reshape(shape)

    def run(img):
        out = (img.astype(np.float32) * scale - mean) / std
        if op.channel_num == 4:
            pad_shape = (1,) + out.shape[1:] if op.order == "chw" else out.shape[:2] + (1,)
            out = np.concatenate([out, np.zeros(pad_shape, np.float32)], axis=0 if op.order == "chw" else 2)
        return out.astype(np.float16) if op.output_fp16 else out
    return run


def to_chw(_op):
    return lambda img: img.transpose((2, 0, 1))


def resize_by_height(op):
    def run(img):
        h, w = img.shape[:2]
        width = min(op.max_width, int(math.ceil(op.height * w / float(h))))
        return cv2.resize(img, (width, op.height))
    return run


def pad_to_size(op):
    width, height = op.size

    def run(img):
        h, w = img.shape[:2]
        if h > height or w > width:
            raise PreprocessError(f"image of {w}x{h} is larger than PadToSize {width}x{height}")
        out = np.full((height, width) + img.shape[2:], op.value, dtype=img.dtype)
        out[:h, :w] = img
        return out
    return run


BUILDERS = {
    op_settings.ResizeImage: resize_image,
    op_settings.CropImage: crop_image,
    op_settings.NormalizeImage: normalize_image,
    op_settings.ToCHWImage: to_chw,
    op_settings.ResizeByHeight: resize_by_height,
    op_settings.PadToSize: pad_to_size,
}


def build_preprocess(ops):
    """Typed op settings (DecodeImage excluded) -> callable HWC uint8 image -> float32 tensor."""
    steps = [BUILDERS[type(op)](op) for op in ops if not isinstance(op, op_settings.DecodeImage)]

    def preprocess(img):
        for step in steps:
            img = step(img)
        return np.ascontiguousarray(img)
    return preprocess


def decode_settings(ops):
    """(to_rgb, min_side) for decoding: channel order from DecodeImage, and the smallest short
    side the first resize needs, below which reduced JPEG decoding must not go."""
    to_rgb = True
    for op in ops:
        if isinstance(op, op_settings.DecodeImage):
            to_rgb = op.to_rgb
        elif isinstance(op, op_settings.ResizeImage):
            return to_rgb, op.resize_short if op.resize_short is not None else max(op.size)
        elif isinstance(op, op_settings.ResizeByHeight):
            return to_rgb, max(op.height, op.max_width)
        elif isinstance(op, op_settings.CropImage):
            return to_rgb, None
    return to_rgb, None
