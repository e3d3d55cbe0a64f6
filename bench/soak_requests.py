"""The soak's requests: valid ones in each body protocol, and the rotation of hostile ones
(malformed JSON and binary bodies) with the clear refusal each must get."""
import base64

import numpy as np

from harness.payloads import b64, jpeg_declaring, json_body, png_declaring

# Low limits so that "over the limit" requests are cheap to send (the soak's own server has them).
SERVER_INIT_ARGS = {"max_images_per_request": 8, "max_image_pixels": 20_000_000}
JSON = "application/json"
BOUNDARY = "soak-7d1f"
# valid requests: base64 in JSON (1-4 images), multipart/form-data (1-4), one image as the body
VALID_PROTOCOLS = ("json", "multipart", "image")


# ---- requests --------------------------------------------------------------------------------

def hostile_cases(valid_b64, input_shape, limits_known):
    """[(name, body bytes, expected HTTP status, texts the answer must contain)]."""
    jpeg = next(data for name, data in valid_b64 if name.lower().endswith((".jpg", ".jpeg")))
    raw_jpeg = base64.b64decode(jpeg)
    truncated = b64(raw_jpeg[:len(raw_jpeg) // 2])
    good = valid_b64[0][1]
    zeros = np.zeros([1, *input_shape], "float32").tobytes()
    cases = [
        ("images missing", {"top_k": 1}, "images: missing"),
        ("images not a list", {"images": {"a": good}}, "images: expected a list"),
        ("images empty", {"images": []}, "images: empty list"),
        ("item not a string", {"images": [good, 5]}, "images[1]: expected a base64 string"),
        ("invalid base64", {"images": ["%%%not base64"]}, "images[0]: not valid base64"),
        ("not an image", {"images": [b64(b"%PDF-1.4 a document, not an image " * 20)]},
         "images[0]: not a decodable image"),
        ("0-byte image", {"images": [""]}, "images[0]: empty image"),
        ("truncated JPEG", {"images": [truncated]}, "images[0]: truncated JPEG"),
        ("PNG bomb 50000x50000", {"images": [b64(png_declaring(50000, 50000))]}, "images[0]: image is too large"),
        ("JPEG bomb 50000x50000", {"images": [b64(jpeg_declaring(50000, 50000))]}, "images[0]: image is too large"),
        ("mixed valid and invalid", {"images": [good, "***", good, b64(b"nope")]},
         ("images[1]: not valid base64", "images[3]: not a decodable image")),
        ("top_k string", {"images": [good], "top_k": "5"}, "top_k: expected a whole number"),
        ("top_k huge", {"images": [good], "top_k": 10**9}, "top_k: 1000000000 is over the maximum"),
        ("unknown field", {"images": [good], "colour": "red"}, "unknown field(s) 'colour'"),
        ("server-side paths", {"paths": ["/etc/passwd"]}, "paths: server-side paths are never read"),
        ("ndarray wrong shape", {"images": b64(np.zeros([1, 3, 8, 8], "float32").tobytes()),
                                 "revert_params": {"shape": [1, 3, 8, 8], "dtype": "float32"}},
         "revert_params.shape: [1, 3, 8, 8] does not fit this model"),
        ("ndarray byte count", {"images": b64(zeros[:-4]), "revert_params": {"shape": [1, *input_shape]}},
         "bytes do not match revert_params shape"),
        ("ndarray wrong dtype", {"images": b64(zeros), "revert_params": {"shape": [1, *input_shape], "dtype": "int64"}},
         "revert_params.dtype: 'int64' is not supported"),
        ("revert_params not a dict", {"images": b64(zeros), "revert_params": [1, *input_shape]},
         "revert_params: expected {'shape'"),
    ]
    if limits_known:  # these depend on SERVER_INIT_ARGS
        cases += [("9 images over the limit of 8", {"images": [good] * 9}, "images: 9 images, over the limit of 8"),
                  ("5000x5000 over max_image_pixels", {"images": [b64(png_declaring(5000, 5000))]},
                   "images[0]: 5000x5000 is 25000000 pixels, over the limit of 20000000")]
    out = [(name, json_body(payload), JSON, 200, (text,) if isinstance(text, str) else text)
           for name, payload, text in cases]
    out.append(("body not JSON", b"{this is not json", JSON, 400, ("Bad Request", "JSON")))
    return out + binary_hostile_cases(raw_jpeg)


def binary_hostile_cases(raw_jpeg):
    """Malformed binary bodies: [(name, body, content type, expected HTTP status, texts)]."""
    form = f"multipart/form-data; boundary={BOUNDARY}"
    return [
        ("multipart without boundary", multipart_body([raw_jpeg]), "multipart/form-data", 400,
         ("Content-Type: multipart/form-data needs its boundary",)),
        ("multipart truncated", multipart_body([raw_jpeg])[:-40], form, 400, ("multipart body without its closing",)),
        ("multipart not an image", multipart_body([raw_jpeg, b"GIF89a nothing"]), form, 400,
         ("images[1]: not a decodable image",)),
        ("image body empty", b"", "image/jpeg", 400, ("images[0]: empty image (0 bytes)",)),
        ("image body truncated JPEG", raw_jpeg[:len(raw_jpeg) // 2], "image/jpeg", 400,
         ("images[0]: truncated JPEG",)),
    ]


def multipart_body(files):
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"\r\n\r\n'.encode() + data + b"\r\n"
             for data in files]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def valid_body(protocol, chosen, raw):
    """(body, content type) of a valid request in one of VALID_PROTOCOLS."""
    if protocol == "json":
        return ('{"images": [' + ", ".join(f'"{data}"' for _, data in chosen) + "]}").encode(), JSON
    if protocol == "multipart":
        return multipart_body([raw[name] for name, _ in chosen]), f"multipart/form-data; boundary={BOUNDARY}"
    return raw[chosen[0][0]], "application/octet-stream"
