"""Images in and out of base64, decoded safely and (when it pays) at reduced size.

`decode_image` is where every untrusted image enters: it checks the declared size before
decoding (decompression bombs), refuses truncated files, and turns grey, alpha, 16-bit and
CMYK images into 8-bit 3-channel arrays the way OpenCV's imread does for PaddleClas.
"""
import base64
import binascii
import io
import math
import os

import cv2
import numpy as np
from PIL import Image

from .errors import BadRequest, TooLarge

REDUCED_DECODE_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                        (2, cv2.IMREAD_REDUCED_COLOR_2))
NDARRAY_DTYPES = ("float32", "float16", "uint8")
JPEG_FORMATS = ("JPEG", "MPO")  # PIL calls multi-picture JPEGs (many phone photos) MPO
JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
                   bool: "a boolean", type(None): "null"}


class ImageError(BadRequest):
    """One input image cannot be used; the message says which and why."""


class ImageTooLarge(ImageError, TooLarge):
    """One input image is over a size limit (pixels, or bytes of an ndarray batch)."""


def json_type(value):
    """What a JSON client sent, in its own words: 'a number', 'null', 'an object'..."""
    return JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def b64decode_text(text, where):
    """Strict base64 (a `data:...;base64,` prefix and line breaks allowed) -> bytes."""
    if not isinstance(text, str):
        raise ImageError(f"{where}: expected a base64 string, got {json_type(text)}")
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ImageError(f"{where}: a data: URL must be base64 encoded (data:image/jpeg;base64,...)")
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        pass  # line breaks, or really not base64: the slower path below tells which
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ImageError(f"{where}: not valid base64 ({err})") from err


def image_header(data, where):
    """(format, width, height) read from the file header without decoding the pixels."""
    if not data:
        raise ImageError(f"{where}: empty image (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format, im.width, im.height
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(f"{where}: image is too large to decode ({err})") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{where}: not a decodable image (jpg, png, bmp or webp expected)") from err


def reduction_factor(width, height, min_side):
    """Largest JPEG DCT scale-down (8, 4, 2) that keeps the short side >= 2 * min_side, else 1.

    The margin keeps the model's own resize a real downscale: measured on the PULC model,
    reducing to just above min_side moved scores by up to 0.09, the 2x margin by <= 0.03."""
    for factor, _ in REDUCED_DECODE_FLAGS:
        if min(width, height) // factor >= 2 * min_side:
            return factor
    return 1


def decode_image(data, where="image", max_pixels=None, min_side=None, to_rgb=True):
    """Encoded image bytes -> HWC uint8 array (RGB unless to_rgb is False).

    min_side: the smallest short side the model's preprocessing needs; JPEGs at least twice
    that are decoded at 1/2, 1/4 or 1/8 size, which is several times faster.
    """
    fmt, width, height = image_header(data, where)
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(f"{where}: {width}x{height} is {width * height} pixels, over the limit of {max_pixels}")
    if fmt in JPEG_FORMATS and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        raise ImageError(f"{where}: truncated JPEG (no end-of-image marker)")
    flag = cv2.IMREAD_COLOR
    if min_side and fmt in JPEG_FORMATS:
        factor = reduction_factor(width, height, min_side)
        flag = dict(REDUCED_DECODE_FLAGS).get(factor, cv2.IMREAD_COLOR)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise ImageError(f"{where}: {fmt} data could not be decoded (corrupt or truncated)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if to_rgb else image


def read_image_bytes(image):
    """Client side: a path, bytes, numpy array (HWC, RGB) or PIL image -> encoded image bytes."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            return f.read()
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ImageError(f"numpy images must be HxW or HxWxC uint8, got {image.dtype} {image.shape}")
        bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".png", bgr)
        if not ok:
            raise ImageError(f"could not encode a numpy image of shape {image.shape}")
        return encoded.tobytes()
    raise ImageError(f"cannot send an image of type {type(image).__name__}: use a path, bytes, "
                     f"a numpy array or a PIL image")


def blank_image(width=320, height=320):
    """A small grey PNG: enough to load a model and run it once (warm-up)."""
    return read_image_bytes(np.full((height, width, 3), 128, np.uint8))


def b64encode_image(image):
    return base64.b64encode(read_image_bytes(image)).decode("ascii")


def ndarray_to_b64(batch):
    """PaddleClas's reference protocol: (base64 of raw array bytes, revert_params)."""
    batch = np.ascontiguousarray(batch)
    return base64.b64encode(batch.tobytes()).decode("ascii"), {"shape": list(batch.shape), "dtype": str(batch.dtype)}


def b64_to_ndarray(text, revert_params, max_bytes=None):
    """Inverse of ndarray_to_b64, checking shape and dtype against the bytes received."""
    if not isinstance(revert_params, dict):
        raise ImageError(f"revert_params: expected {{'shape': [...], 'dtype': 'float32'}}, "
                         f"got {json_type(revert_params)}")
    shape, dtype = revert_params.get("shape"), revert_params.get("dtype", "float32")
    if dtype not in NDARRAY_DTYPES:
        raise ImageError(f"revert_params.dtype: {dtype!r} is not supported; use one of {', '.join(NDARRAY_DTYPES)}")
    if (not isinstance(shape, (list, tuple)) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ImageError(f"revert_params.shape: expected a list of positive ints, got {shape!r}")
    expected = math.prod(shape) * np.dtype(dtype).itemsize  # exact: np.prod wraps around at 2**63
    if max_bytes is not None and expected > max_bytes:
        raise ImageTooLarge(f"revert_params.shape: {shape} is {expected} bytes, over the limit of {max_bytes}")
    raw = b64decode_text(text, "images")
    if len(raw) != expected:
        raise ImageError(f"images: {len(raw)} bytes do not match revert_params shape {shape} "
                         f"of {dtype} ({expected} bytes)")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)
