"""Model files on disk: a Paddle inference folder's program and weights, a file's sha256, and
derived models written atomically into the cache."""
import hashlib
import os
import tempfile

from ..errors import ModelError

PADDLE_MODEL_STEMS = ("inference", "model")
OPENVINO_IR = "model.xml"  # clas-quantize's INT8 folders


def openvino_ir(model_path):
    """The OpenVINO IR file a model path names (an .xml file, or a folder holding model.xml), or None."""
    if os.path.isfile(model_path):
        return model_path if model_path.endswith(".xml") else None
    ir = os.path.join(model_path, OPENVINO_IR)
    return ir if os.path.isfile(ir) else None


def paddle_model_files(model_dir):
    """(program file, params file) inside a Paddle inference folder, preferring Paddle 3's json."""
    for stem in PADDLE_MODEL_STEMS:
        for program in (f"{stem}.json", f"{stem}.pdmodel"):
            program_path = os.path.join(model_dir, program)
            params_path = os.path.join(model_dir, f"{stem}.pdiparams")
            if os.path.isfile(program_path):
                if not os.path.isfile(params_path):
                    raise ModelError(f"{model_dir}: found {program} but not {stem}.pdiparams beside it")
                return program_path, params_path
    raise ModelError(f"{model_dir}: not a Paddle inference model folder: expected inference.pdmodel "
                     f"(or inference.json) with inference.pdiparams")


def model_files(model_path):
    """Every file a model is made of: an .onnx file; an OpenVINO IR's .xml and .bin; a Paddle
    folder's program and weights."""
    ir = openvino_ir(model_path)
    if ir is not None:
        return [ir, ir[:-len(".xml")] + ".bin"]
    if os.path.isfile(model_path):
        return [model_path]
    return list(paddle_model_files(model_path))


def is_quantized_ir(model_path):
    """Whether the model is an OpenVINO IR with INT8 (FakeQuantize) layers."""
    ir = openvino_ir(model_path)
    if ir is None:
        return False
    with open(ir, encoding="utf-8", errors="replace") as f:
        return 'type="FakeQuantize"' in f.read()


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(model, path):
    """An ONNX model written to `path` so that no reader ever sees half of it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".deriving-", suffix=".onnx")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
