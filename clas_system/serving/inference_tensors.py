"""Typed tensors on the Open Inference Protocol's wire (KServe v2 REST) and its binary-data extension.

A request body is a JSON object, optionally followed by raw tensor bytes: then the header
`Inference-Header-Content-Length` gives the JSON's length, and each input whose parameters hold
`binary_data_size` takes that many bytes, in input order. BYTES elements are a 4-byte
little-endian length and the bytes; other types are little-endian, row-major. An answer is built
the same way: outputs asked for as binary get `binary_data_size` and their bytes after the JSON.

    request = read_request(body, header_length)        # InferRequest: the JSON and its input Tensors
    body, header_length = write_response(header, outputs, binary_names)

In JSON, BYTES elements are strings: here they are base64 of the bytes (images), the convention
for binary data without the extension. Every refusal is a BadRequest naming its field.
"""
import binascii
import math
import struct
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np
import orjson

from ..errors import BadRequest
from .fields import json_type

NUMPY_TYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
               "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
               "FP32": np.float32, "FP64": np.float64}
LENGTH = struct.Struct("<I")


class Tensor(NamedTuple):
    """A named tensor: `data` is a numpy array of `shape`, or for BYTES a flat list of bytes."""
    name: str
    datatype: str
    shape: List[int]
    data: Any


class InferRequest(NamedTuple):
    header: Dict[str, Any]  # the JSON object: id, parameters, inputs, outputs
    inputs: List[Tensor]


def json_header(body, header_length):
    """The JSON part of a body -> (object, the bytes after it)."""
    if header_length:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise BadRequest.for_field("Inference-Header-Content-Length",
                                       f"{header_length!r} is not a length within the body's {len(body)} bytes")
        split = int(header_length)
    else:
        split = len(body)
    try:
        header = orjson.loads(body[:split])
    except orjson.JSONDecodeError as err:
        raise BadRequest.for_field("body", f"not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise BadRequest.for_field("body", f"expected an inference request object, got {json_type(header)}")
    return header, memoryview(body)[split:]


def checked_shape(value, field):
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in value):
        raise BadRequest.for_field(field, f"expected a list of whole numbers >= 0, got {value!r}")
    return value


def bytes_elements(raw, field):
    """The BYTES wire form (length-prefixed elements) -> list of bytes."""
    elements, at = [], 0
    while at < len(raw):
        if at + LENGTH.size > len(raw):
            raise BadRequest.for_field(field, f"BYTES data ends inside an element's 4-byte length (at byte {at})")
        (size,) = LENGTH.unpack_from(raw, at)
        at += LENGTH.size
        if at + size > len(raw):
            raise BadRequest.for_field(field, f"BYTES element of {size} bytes runs past the tensor's end")
        elements.append(bytes(raw[at:at + size]))
        at += size
    return elements


def base64_elements(data, field):
    """JSON BYTES data (nested lists of base64 strings) -> list of bytes."""
    elements = []
    for i, text in enumerate(flattened(data)):
        if not isinstance(text, str):
            raise BadRequest.for_field(field, f"BYTES elements in JSON are base64 strings, got {json_type(text)}", i)
        try:
            elements.append(binascii.a2b_base64(text, strict_mode=True))
        except (binascii.Error, ValueError) as err:
            raise BadRequest.for_field(field, f"not valid base64 ({err})", i) from err
    return elements


def flattened(data):
    if isinstance(data, list):
        for item in data:
            yield from flattened(item)
    else:
        yield data


def numeric_data(data, datatype, field):
    """JSON data (nested lists of numbers, row-major) -> a flat array of the datatype."""
    try:
        return np.asarray(list(flattened(data)), dtype=NUMPY_TYPES[datatype])
    except (TypeError, ValueError, OverflowError) as err:
        raise BadRequest.for_field(field, f"not {datatype} values ({err})") from err


def read_tensor(spec, i, rest):
    """One input object (and the binary bytes left) -> (Tensor, bytes left after it)."""
    field = f"inputs[{i}]"
    if not isinstance(spec, dict):
        raise BadRequest.for_field(field, f"expected an input tensor object, got {json_type(spec)}")
    name, datatype = spec.get("name"), spec.get("datatype")
    if not isinstance(name, str):
        raise BadRequest.for_field(f"{field}.name", f"expected a string, got {name!r}")
    if datatype != "BYTES" and datatype not in NUMPY_TYPES:
        raise BadRequest.for_field(f"{field}.datatype", f"{datatype!r} is not a tensor datatype")
    shape = checked_shape(spec.get("shape"), f"{field}.shape")
    size = (spec.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(rest):
            raise BadRequest.for_field(f"{field}.parameters.binary_data_size",
                                       f"{size!r} is more than the {len(rest)} bytes left after the JSON")
        raw, rest = rest[:size], rest[size:]
        data = bytes_elements(raw, f"{field}.data") if datatype == "BYTES" else binary_array(raw, datatype, field)
    elif "data" in spec:
        data = (base64_elements(spec["data"], f"{field}.data") if datatype == "BYTES"
                else numeric_data(spec["data"], datatype, f"{field}.data"))
    else:
        raise BadRequest.for_field(field, "no data: give 'data' or parameters.binary_data_size")
    count = len(data) if datatype == "BYTES" else data.size
    if count != math.prod(shape):
        raise BadRequest.for_field(f"{field}.shape", f"{shape} holds {math.prod(shape)} elements, the data {count}")
    if datatype != "BYTES":
        data = data.reshape(shape)
    return Tensor(name, datatype, shape, data), rest


def binary_array(raw, datatype, field):
    itemsize = np.dtype(NUMPY_TYPES[datatype]).itemsize
    if len(raw) % itemsize:
        raise BadRequest.for_field(f"{field}.parameters.binary_data_size",
                                   f"{len(raw)} bytes is not a whole number of {datatype} elements")
    return np.frombuffer(raw, dtype=np.dtype(NUMPY_TYPES[datatype]).newbyteorder("<"))


def read_request(body, header_length=""):
    """An infer request's body -> InferRequest; the binary part must be used up exactly."""
    header, rest = json_header(body, header_length)
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest.for_field("inputs", f"expected a non-empty list of input tensors, got {inputs!r:.80}")
    tensors = []
    for i, spec in enumerate(inputs):
        tensor, rest = read_tensor(spec, i, rest)
        tensors.append(tensor)
    if len(rest):
        raise BadRequest.for_field("body", f"{len(rest)} bytes after the JSON belong to no input "
                                           f"(binary_data_size too small?)")
    return InferRequest(header, tensors)


def requested_binary(header, names):
    """Which outputs to send, and which of them as binary: the request's `outputs` list (each
    with parameters.binary_data), else every output, binary when parameters.binary_data_output."""
    asked = header.get("outputs")
    if asked is None:
        binary = bool((header.get("parameters") or {}).get("binary_data_output", False))
        return list(names), set(names) if binary else set()
    if not isinstance(asked, list):
        raise BadRequest.for_field("outputs", f"expected a list of output objects, got {json_type(asked)}")
    wanted, binary = [], set()
    for i, spec in enumerate(asked):
        name = spec.get("name") if isinstance(spec, dict) else None
        if name not in names:
            raise BadRequest.for_field(f"outputs[{i}].name", f"{name!r} is not an output; outputs: {', '.join(names)}")
        parameters = spec.get("parameters") or {}
        if parameters.get("classification"):
            raise BadRequest.for_field(f"outputs[{i}].parameters.classification", "not supported here")
        wanted.append(name)
        if parameters.get("binary_data", False):
            binary.add(name)
    return wanted, binary


def tensor_bytes(tensor):
    if tensor.datatype == "BYTES":
        return b"".join(LENGTH.pack(len(item)) + item for item in tensor.data)
    return np.ascontiguousarray(tensor.data, dtype=np.dtype(NUMPY_TYPES[tensor.datatype]).newbyteorder("<")).tobytes()


def json_data(tensor):
    if tensor.datatype == "BYTES":
        return [item.decode("utf-8", "replace") for item in tensor.data]
    return np.asarray(tensor.data).ravel().tolist()


def write_response(header, outputs, binary_names) -> "tuple[bytes, Optional[int]]":
    """The answer's JSON (`header` plus the outputs) and the binary outputs after it -> (body,
    the JSON's length when binary data follows, else None)."""
    described, chunks = [], []
    for tensor in outputs:
        entry = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if tensor.name in binary_names:
            raw = tensor_bytes(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = json_data(tensor)
        described.append(entry)
    text = orjson.dumps({**header, "outputs": described})
    if not chunks:
        return text, None
    return text + b"".join(chunks), len(text)
