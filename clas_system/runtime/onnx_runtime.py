"""ONNX Runtime: .onnx files on CPU or CUDA. For uint8 image input the cast, mean/std and layout
are prepended to the graph as ONNX nodes; the result is cached by model hash + transform."""
import hashlib
import os

import numpy as np

from params.common import cache_dir

from ..errors import ModelError
from .model_files import file_sha256, write_atomically

# Bump when the prepended nodes change, so cached models made by an older version are rebuilt.
IMAGE_INPUT_VERSION = 2


def prepend_image_input(model, image_input):
    """The ONNX model with its first input replaced by uint8 [N, H, W, 3] images: transposed to
    NCHW while still uint8 (if the model wants NCHW), cast, then x * (scale / std) - mean / std
    in two nodes. That differs from PaddleClas's (x * scale - mean) / std in the last bit only,
    and costs a fifth of the four-node spelling."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    image = next(i for i in graph.input if i.name not in initializers)
    dims = list(image.type.tensor_type.shape.dim)
    if len(dims) != 4:
        raise ModelError(f"the model's input {image.name!r} has {len(dims)} dimensions; uint8 image input needs 4")
    name = image.name
    normalised = f"{name}__normalised"
    for node in graph.node:
        node.input[:] = [normalised if i == name else i for i in node.input]
    nhwc = [dims[0], dims[2], dims[3], dims[1]] if image_input.channel_first else dims
    new_input = helper.make_tensor_value_info(name, TensorProto.UINT8,
                                              [d.dim_param if d.dim_param else (d.dim_value or None) for d in nhwc])
    channel_shape = (1, 3, 1, 1) if image_input.channel_first else (1, 1, 1, 3)
    mean = np.array(image_input.mean, np.float32).reshape(channel_shape)
    std = np.array(image_input.std, np.float32).reshape(channel_shape)
    constants = [numpy_helper.from_array((np.float32(image_input.scale) / std).astype(np.float32), f"{name}__gain"),
                 numpy_helper.from_array((-mean / std).astype(np.float32), f"{name}__offset")]
    nodes = []
    pixels = name
    if image_input.channel_first:
        nodes.append(helper.make_node("Transpose", [name], [f"{name}__nchw"], perm=[0, 3, 1, 2]))
        pixels = f"{name}__nchw"
    nodes += [helper.make_node("Cast", [pixels], [f"{name}__float"], to=TensorProto.FLOAT),
              helper.make_node("Mul", [f"{name}__float", f"{name}__gain"], [f"{name}__scaled"]),
              helper.make_node("Add", [f"{name}__scaled", f"{name}__offset"], [normalised])]
    inputs = [new_input if i.name == name else i for i in graph.input]
    del graph.input[:]
    graph.input.extend(inputs)
    graph.initializer.extend(constants)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    return model


def image_input_model(model_file, image_input):
    """Path of the cached copy of `model_file` taking uint8 images, made now if missing."""
    import onnx

    digest = hashlib.sha256(f"{file_sha256(model_file)} {image_input.key()} v{IMAGE_INPUT_VERSION}".encode())
    path = os.path.join(cache_dir(), "models", f"image-input-{digest.hexdigest()[:32]}.onnx")
    if not os.path.isfile(path):
        model = prepend_image_input(onnx.load(model_file), image_input)
        onnx.checker.check_model(model)
        write_atomically(model, path)
    return path


class OnnxPredictor:
    def __init__(self, model_file, params, max_batch_size=1, image_input=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = params.cpu_threads
        options.inter_op_num_threads = 1
        if not params.ir_optim:
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        providers = ["CPUExecutionProvider"]
        if params.use_gpu:
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": params.gpu_id}))
        try:
            path = model_file if image_input is None else image_input_model(model_file, image_input)
            self._session = onnxruntime.InferenceSession(path, options, providers=providers)
        except ModelError:
            raise
        except Exception as err:  # onnx and onnxruntime raise their own error types
            raise ModelError(f"{model_file}: ONNX Runtime could not load the model: {err}") from err
        self.description = (f"ONNX Runtime {onnxruntime.__version__} {self._session.get_providers()[0]}, "
                            f"{params.cpu_threads} threads")
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())

    def run(self, feeds):
        return self._session.run(list(self.output_names), {n: feeds[n] for n in self.input_names})
