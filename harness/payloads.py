"""What requests carry: the shared images (../shared/images), base64 text, JSON bodies, and
hand-made files that lie about their size."""
import base64
import io
import json
import struct
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_path(relative):
    return str(SHARED_IMAGES / relative)


def image_bytes(relative):
    return (SHARED_IMAGES / relative).read_bytes()


def b64(data):
    return base64.b64encode(data).decode()


def image_b64(relative):
    return b64(image_bytes(relative))


def json_body(payload):
    return json.dumps(payload).encode()


def file_body(data):
    """A one-image request body of the file protocol."""
    return json_body({"images": [b64(data)]})


def encode(image, fmt, **kwargs):
    """A PIL image as the bytes of an image file."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def png_declaring(width, height):
    """A real 1x1 PNG whose IHDR claims width x height (CRC fixed, so it parses as a valid header)."""
    from PIL import Image

    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    struct.pack_into(">II", data, 16, width, height)  # IHDR data starts at 16: width, height
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))  # CRC over type + 13 data bytes
    return bytes(data)


def jpeg_declaring(width, height):
    """A real 8x8 baseline JPEG whose SOF0 claims width x height."""
    from PIL import Image

    data = bytearray(encode(Image.new("RGB", (8, 8)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)
