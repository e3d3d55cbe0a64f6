"""Images on their way to the server: paths, bytes, numpy arrays or PIL images as the encoded
files the server decodes (base64 in JSON), and PaddleClas's ndarray protocol. OpenCV and Pillow
are imported only for arrays and PIL images."""
import base64
import io
import os
import sys

import numpy as np

from ..errors import ImageError


def read_image_bytes(image):
    """A path, bytes, numpy array (HWC, RGB) or PIL image -> encoded image bytes."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            return f.read()
    if isinstance(image, np.ndarray):
        return array_png(image)
    pil = sys.modules.get("PIL.Image")  # a PIL image means Pillow is already imported
    if pil is not None and isinstance(image, pil.Image):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue()
    raise ImageError(f"cannot send an image of type {type(image).__name__}: use a path, bytes, "
                     f"a numpy array or a PIL image")


def array_png(image):
    """An HxW or HxWx3 (RGB) uint8 array as PNG bytes."""
    import cv2

    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ImageError(f"numpy images must be HxW or HxWxC uint8, got {image.dtype} {image.shape}")
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", bgr)
    if not ok:
        raise ImageError(f"could not encode a numpy image of shape {image.shape}")
    return encoded.tobytes()


def b64encode_image(image):
    return base64.b64encode(read_image_bytes(image)).decode("ascii")


def ndarray_to_b64(batch):
    """PaddleClas's reference protocol: (base64 of raw array bytes, revert_params)."""
    batch = np.ascontiguousarray(batch)
    return base64.b64encode(batch.tobytes()).decode("ascii"), {"shape": list(batch.shape), "dtype": str(batch.dtype)}
