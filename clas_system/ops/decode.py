"""Encoded images in, pixels out: decoded safely and (when it pays) at reduced size.

`decode_image` is where every untrusted image enters: it checks the declared size before
decoding (decompression bombs), refuses truncated files, and turns grey, alpha, 16-bit and
CMYK images into 8-bit 3-channel arrays the way OpenCV's imread does for PaddleClas.
"""
import io

import cv2
import numpy as np
from PIL import Image

from ..errors import ImageError, ImageTooLarge, prefixed
from ..hooks import IMAGE_DECODED

REDUCED_DECODE_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                        (2, cv2.IMREAD_REDUCED_COLOR_2))
JPEG_FORMATS = ("JPEG", "MPO")  # PIL calls multi-picture JPEGs (many phone photos) MPO


def image_header(data, where=None):
    """(format, width, height) read from the file header without decoding the pixels."""
    if not data:
        raise ImageError(prefixed(where, "empty image (0 bytes)"))
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format, im.width, im.height
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(prefixed(where, f"image is too large to decode ({err})")) from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(prefixed(where, "not a decodable image (jpg, png, bmp or webp expected)")) from err


def reduction_factor(width, height, min_side):
    """Largest JPEG DCT scale-down (8, 4, 2) that keeps the short side >= 2 * min_side, else 1.

    The margin keeps the model's own resize a real downscale: measured on the PULC model,
    reducing to just above min_side moved scores by up to 0.09, the 2x margin by <= 0.03."""
    for factor, _ in REDUCED_DECODE_FLAGS:
        if min(width, height) // factor >= 2 * min_side:
            return factor
    return 1


def decode_image(data, where=None, max_pixels=None, min_side=None, to_rgb=True):
    """Encoded image bytes -> HWC uint8 array (RGB unless to_rgb is False). `where` names the
    image in errors (else the caller locates them, see ClasSystemError.at).

    min_side: the smallest short side the model's preprocessing needs; JPEGs at least twice
    that are decoded at 1/2, 1/4 or 1/8 size, which is several times faster.
    """
    fmt, width, height = image_header(data, where)
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(prefixed(where, f"{width}x{height} is {width * height} pixels, "
                                            f"over the limit of {max_pixels}"))
    if fmt in JPEG_FORMATS and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        raise ImageError(prefixed(where, "truncated JPEG (no end-of-image marker)"))
    flag = cv2.IMREAD_COLOR
    if min_side and fmt in JPEG_FORMATS:
        factor = reduction_factor(width, height, min_side)
        flag = dict(REDUCED_DECODE_FLAGS).get(factor, cv2.IMREAD_COLOR)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise ImageError(prefixed(where, f"{fmt} data could not be decoded (corrupt or truncated)"))
    IMAGE_DECODED()
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if to_rgb else image


def blank_image(width=320, height=320):
    """A small grey PNG: enough to load a model and run it once (warm-up)."""
    return cv2.imencode(".png", np.full((height, width, 3), 128, np.uint8))[1].tobytes()
