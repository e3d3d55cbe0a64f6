"""PaddleClas-compatible preprocess ops: `build_preprocess(ops)` -> one callable image -> tensor.

Same arithmetic as PaddleClas's deploy ops (cv2 resize, round() on resize_short, floor-centred
crop, float32 `x * scale - mean) / std`), so the same image and config give the same tensor.

`build_pipeline(ops)` splits the same ops in two for serving: a geometric part done per image on
uint8 arrays (resize, crop, pad), and a tensor part (cast, mean/std, layout, padding after
normalisation) done once per batch, or inside the model when the backend can (`ImageInput`).
"""
import dataclasses
import math
from typing import Callable, Optional, Tuple

import cv2
import numpy as np
from PIL import Image

from params import ops as op_settings

from ..errors import PreprocessError

CV2_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA,
                     "bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}
PIL_INTERPOLATION = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "area": Image.BOX,
                     "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


# A 2000x1 image with resize_short 256 would become 512000x256: refuse such sizes, not swap.
MAX_RESIZED_PIXELS = 40_000_000


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


# ---- serving: per-image geometry, per-batch tensor stage -----------------------------------

# PadToSize among them pads the uint8 image; after NormalizeImage it belongs to the tensor part.
GEOMETRIC_OPS = (op_settings.ResizeImage, op_settings.CropImage, op_settings.ResizeByHeight, op_settings.PadToSize)


@dataclasses.dataclass(frozen=True)
class ImageInput:
    """What a model given uint8 NHWC images must do itself to equal the tensor part:
    float32 `(x * scale - mean) / std` per channel, then NCHW if `channel_first`."""
    scale: float
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    channel_first: bool

    def key(self):
        """A stable text naming this transform, for caches of models derived with it."""
        return repr(dataclasses.astuple(self))


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """`prepare(image)` per image; `to_batch(prepared)` -> the float32 model input batch.

    When `image_input` is set, `prepare` gives uint8 HWC images and a backend may take their
    stack as is, doing `image_input` in the graph; `to_batch` does the same in one pass."""
    prepare: Callable  # HWC uint8 image -> uint8 HWC image (or, without a tensor stage, the tensor)
    to_batch: Callable  # list of prepare() results -> float32 batch
    image_input: Optional[ImageInput]  # None: the tensor part cannot run in a graph


def normalize_table(op):
    """[3, 256] float32: every uint8 value through PaddleClas's (x * scale - mean) / std per
    channel, in the same float32 operations, so a lookup equals the arithmetic bit for bit."""
    values = np.arange(256, dtype=np.float32).reshape(1, 256)
    mean = np.array(op.mean, np.float32).reshape(-1, 1)
    std = np.array(op.std, np.float32).reshape(-1, 1)
    return np.ascontiguousarray(np.broadcast_to((values * np.float32(op.scale) - mean) / std, (3, 256)))


def tensor_stage(ops):
    """(NormalizeImage, PadToSize after it or None, channel_first) when `ops` is a plain tensor
    part a batch pass can do: NormalizeImage on HWC, optional PadToSize, optional ToCHWImage
    last. None for anything else (the per-image path runs those ops as they are)."""
    kinds = [type(op) for op in ops]
    if not kinds or kinds[0] is not op_settings.NormalizeImage:
        return None
    normalize = ops[0]
    if normalize.order == "chw" or normalize.channel_num != 3 or normalize.output_fp16:
        return None
    rest = kinds[1:]
    pad = None
    if rest[:1] == [op_settings.PadToSize]:
        pad, rest = ops[1], rest[1:]
    if rest not in ([], [op_settings.ToCHWImage]):
        return None
    return normalize, pad, bool(rest)


def batch_normalizer(normalize, pad, channel_first):
    """list of uint8 HWC images -> float32 batch, written once into its final layout through a
    256-entry table per channel (PadToSize's fill where images are smaller)."""
    table = normalize_table(normalize)

    def to_batch(images):
        if pad is not None:
            width, height = pad.size
        else:
            height, width = images[0].shape[:2]
        shape = (len(images), 3, height, width) if channel_first else (len(images), height, width, 3)
        out = np.full(shape, pad.value, np.float32) if pad is not None else np.empty(shape, np.float32)
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            if pad is None and (h, w) != (height, width):
                raise PreprocessError(f"images of {width}x{height} and {w}x{h} cannot share a batch; "
                                      f"end the preprocess with a fixed size (CropImage, ResizeImage size)")
            for c in range(3):
                target = out[i, c, :h, :w] if channel_first else out[i, :h, :w, c]
                np.take(table[c], image[:, :, c], out=target)
        return out
    return to_batch


def fits_within(pad):
    """Checks per image, where the error reaches its request, what PadToSize will need."""
    width, height = pad.size

    def run(img):
        h, w = img.shape[:2]
        if h > height or w > width:
            raise PreprocessError(f"image of {w}x{h} is larger than PadToSize {width}x{height}")
        return img
    return run


def geometric_steps(ops):
    return [BUILDERS[type(op)](op) for op in ops]


def chain(steps):
    def run(img):
        for step in steps:
            img = step(img)
        return img
    return run


def build_pipeline(ops):
    """Typed op settings -> Pipeline: the leading resize/crop ops per image, the rest per batch
    (or in the graph) when they are a plain NormalizeImage (+ PadToSize) (+ ToCHWImage)."""
    ops = [op for op in ops if not isinstance(op, op_settings.DecodeImage)]
    split = next((i for i, op in enumerate(ops) if not isinstance(op, GEOMETRIC_OPS)), len(ops))
    stage = tensor_stage(ops[split:])
    if stage is None:
        whole = build_preprocess(ops)
        return Pipeline(prepare=whole, to_batch=np.stack, image_input=None)
    normalize, pad, channel_first = stage
    geometry = chain(geometric_steps(ops[:split]))
    if pad is not None:
        geometry = chain([geometry, fits_within(pad)])
    image_input = None if pad is not None else ImageInput(
        scale=float(normalize.scale), mean=tuple(normalize.mean) * (3 // len(normalize.mean)),
        std=tuple(normalize.std) * (3 // len(normalize.std)), channel_first=channel_first)
    return Pipeline(prepare=lambda img: np.ascontiguousarray(geometry(img)),
                    to_batch=batch_normalizer(normalize, pad, channel_first), image_input=image_input)
