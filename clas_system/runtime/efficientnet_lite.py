"""EfficientNet-Lite as an ONNX graph built from its PyTorch state dict, with no torch.

EfficientNet-Lite (Google's mobile variant: ReLU6, no squeeze-excitation, fixed stem and head)
is seven stages of MBConv blocks (1x1 expand, depthwise kxk, 1x1 project, residual when the
shape allows) between a 3x3 stride-2 stem and a 1x1 head of 1280 channels. The block layout is
read from the weights' names and shapes; the strides are the architecture's (the first block of
each stage). Convolutions pad like TensorFlow's SAME, as the weights were trained, so the graph
is built for one input size. Batch norms are folded into the convolutions.
"""
import math
import re

import numpy as np

from ..errors import DerivationError

BN_EPS = 1e-3
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


def fold_batch_norm(weights, state, bn):
    scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"] + BN_EPS)
    folded = weights * scale.reshape(-1, *([1] * (weights.ndim - 1)))
    return folded.astype(np.float32), (state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale).astype(np.float32)


def same_padding(size, kernel, stride):
    """TensorFlow SAME padding of one side: ((before, after), output size)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2), out


def block_layout(state):
    """Per MBConv block: (prefix, has_expand, stride, residual)."""
    numbers = {int(m.group(1)) for key in state if (m := re.match(r"_blocks\.(\d+)\.", key))}
    if not numbers or numbers != set(range(len(numbers))):
        raise DerivationError("the weights hold no numbered EfficientNet blocks (_blocks.N.*)")
    layout, stage, previous_out = [], -1, None
    for i in range(len(numbers)):
        prefix = f"_blocks.{i}."
        has_expand = prefix + "_expand_conv.weight" in state
        in_channels = (state[prefix + "_expand_conv.weight"].shape[1] if has_expand
                       else state[prefix + "_depthwise_conv.weight"].shape[0])
        out_channels = state[prefix + "_project_conv.weight"].shape[0]
        starts_stage = out_channels != previous_out
        if starts_stage:
            stage += 1
        if stage >= len(STAGE_STRIDES):
            raise DerivationError("the weights have more stages than EfficientNet")
        stride = STAGE_STRIDES[stage] if starts_stage else 1
        layout.append((prefix, has_expand, stride, stride == 1 and in_channels == out_channels))
        previous_out = out_channels
    if stage != len(STAGE_STRIDES) - 1:
        raise DerivationError(f"the weights have {stage + 1} stages; EfficientNet has {len(STAGE_STRIDES)}")
    return layout


class GraphBuilder:
    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers, self.count = [], [], 0

    def fresh(self, stem):
        self.count += 1
        return f"{stem}:{self.count}"

    def constant(self, array, stem):
        name = self.fresh(stem)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, stem, **attributes):
        out = self.fresh(stem)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attributes))
        return out

    def conv(self, x, state, conv, bn, size, stride=1, depthwise=False, relu6=True):
        """A convolution with its batch norm folded in (and ReLU6): (output, output size)."""
        weights, bias = fold_batch_norm(state[f"{conv}.weight"], state, bn)
        kernel = weights.shape[-1]
        (before, after), out_size = same_padding(size, kernel, stride)
        y = self.node("Conv", [x, self.constant(weights, conv + ".weight"), self.constant(bias, conv + ".bias")], conv,
                      kernel_shape=[kernel, kernel], strides=[stride, stride],
                      group=weights.shape[0] if depthwise else 1, pads=[before, before, after, after])
        if relu6:
            y = self.node("Clip", [y, self.constant(np.float32(0), "relu6.min"), self.constant(np.float32(6), "relu6.max")],
                          conv + ".relu6")
        return y, out_size


def efficientnet_lite_features(state, input_size):
    """ONNX model: "image" [N, 3, input_size, input_size] (RGB, (x - 127) / 128) -> "embedding"
    [N, 1280], the head's global average, the input of ImageNet's classifier."""
    import onnx
    from onnx import TensorProto

    try:
        g = GraphBuilder()
        x, side = g.conv("image", state, "_conv_stem", "_bn0", input_size, stride=2)
        for prefix, has_expand, stride, residual in block_layout(state):
            block_input = x
            if has_expand:
                x, _ = g.conv(x, state, prefix + "_expand_conv", prefix + "_bn0", side)
            x, side = g.conv(x, state, prefix + "_depthwise_conv", prefix + "_bn1", side, stride=stride, depthwise=True)
            x, _ = g.conv(x, state, prefix + "_project_conv", prefix + "_bn2", side, relu6=False)
            if residual:
                x = g.node("Add", [x, block_input], prefix + "residual")
        head, _ = g.conv(x, state, "_conv_head", "_bn1", side)
    except KeyError as err:
        raise DerivationError(f"the weights lack {err.args[0]!r}, which EfficientNet-Lite has") from err
    pooled = g.node("GlobalAveragePool", [head], "pool")
    g.nodes.append(g.helper.make_node("Flatten", [pooled], ["embedding"], name="embedding", axis=1))
    dim = state["_conv_head.weight"].shape[0]
    graph = g.helper.make_graph(
        g.nodes, "efficientnet_lite_features",
        [g.helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch_size", 3, input_size, input_size])],
        [g.helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch_size", dim])], g.initializers)
    model = g.helper.make_model(graph, opset_imports=[g.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
