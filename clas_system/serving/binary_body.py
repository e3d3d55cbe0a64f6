"""Image files posted as they are, without base64 or JSON, to PaddleHub's route: a body of one
image file, or multipart/form-data with several. Both give the request dict a JSON body would,
with `images` holding the files' bytes (what the Open Inference route hands the modules too), so
every protocol reaches the modules, their limits and the decoder the same way.

    Content-Type: image/jpeg (any image/*) or application/octet-stream
        the body is one image file; the module's other fields come from the query string
        (POST /predict/clas_system?top_k=2)
    Content-Type: multipart/form-data; boundary=...
        every part named `images` is one image file, in order; every other part is a field

A field's value is read as JSON when it is JSON (`2`, `0.5`, `["cola"]`), else as the text it is
(`add`).
"""
import re
from urllib.parse import parse_qsl

import orjson

from ..errors import BadRequest

IMAGE_PART = "images"
PART_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
MAX_FIELD_PARTS = 64  # parts that are not images: a module takes a handful of fields


def media_type(content_type):
    """b'multipart/form-data; boundary=x' -> ('multipart/form-data', {'boundary': 'x'})."""
    kind, *params = content_type.decode("latin-1").split(";")
    values = {}
    for param in params:
        key, _, value = param.strip().partition("=")
        values[key.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), values


def is_binary(kind):
    """Whether a media type is one this module reads as image files."""
    return kind.startswith("image/") or kind in ("application/octet-stream", "multipart/form-data")


def field_value(text):
    """A field as JSON when it is JSON, else the text itself."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def add_field(request, name, text, where):
    if name in request:
        raise BadRequest.for_field(name, f"given twice in the {where}; give each field once")
    request[name] = field_value(text)


def query_fields(query):
    """The query string -> {field: value}."""
    request = {}
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest.for_field("query", f"not a valid query string ({err})") from err
    for name, value in pairs:
        if name == IMAGE_PART:
            raise BadRequest.for_field(IMAGE_PART, "with an image body, the body is the image; send several "
                                                   "images as multipart/form-data")
        add_field(request, name, value, "query string")
    return request


def part_head(part, index):
    """One multipart part -> (its name, its content)."""
    head, sep, content = part.partition(b"\r\n\r\n")
    if not sep:
        raise BadRequest.for_field("body", f"multipart part {index} has no blank line after its headers")
    name = PART_NAME.search(head)
    if name is None:
        raise BadRequest.for_field("body", f"multipart part {index} has no Content-Disposition name; send "
                                           f"form-data; name=\"images\" for image files")
    return name.group(1).decode("utf-8", "replace"), content


def multipart_request(body, boundary, request):
    """A multipart/form-data body -> `request` with "images": [bytes, ...] and its fields added."""
    if not boundary:
        raise BadRequest.for_field("Content-Type", "multipart/form-data needs its boundary parameter")
    delimiter = b"--" + boundary.encode("latin-1")
    sections = (b"\r\n" + body).split(b"\r\n" + delimiter)
    if len(sections) < 2 or not sections[-1].startswith(b"--"):
        raise BadRequest.for_field("body", f"multipart body without its closing boundary {delimiter.decode()}--: "
                                           f"truncated, or another boundary than the Content-Type's")
    images, fields = [], 0
    for index, section in enumerate(sections[1:-1]):
        _padding, newline, part = section.partition(b"\r\n")
        if not newline:
            raise BadRequest.for_field("body", f"multipart part {index} is empty")
        name, content = part_head(part, index)
        if name == IMAGE_PART:
            images.append(content)
        elif fields >= MAX_FIELD_PARTS:
            raise BadRequest.for_field("body", f"more than {MAX_FIELD_PARTS} fields")
        else:
            fields += 1
            try:
                add_field(request, name, content.decode("utf-8"), "form")
            except UnicodeDecodeError as err:
                raise BadRequest.for_field(name, "not UTF-8 text; only parts named 'images' are files") from err
    if images:
        request[IMAGE_PART] = images
    return request


def binary_request(body, content_type, query):
    """An image or multipart/form-data body -> the module's request dict."""
    kind, params = media_type(content_type)
    request = query_fields(query)
    if kind == "multipart/form-data":
        return multipart_request(body, params.get("boundary"), request)
    request[IMAGE_PART] = [body]
    return request
