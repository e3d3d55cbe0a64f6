"""Cutting a model at an inner tensor works whatever `onnx` is installed.

onnx up to 1.17 inferred shapes inside its Extractor; 1.18 and later read the cut tensor's shape
from the model's value_info and fail when it is not there ("names were not found in
value_infos"), which is how the packaged models come. `extract` infers shapes first.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the server's extra is not installed: pip install '.[server]'")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from clas_system.errors import DerivationError  # noqa: E402
from clas_system.runtime.derived_models import classifier_embedding, extract, tensor_dims  # noqa: E402


def tiny_classifier():
    """image [N, 3, 8, 8] -> conv 4 -> relu -> global pool -> flatten [N, 4] -> matmul [N, 2];
    no value_info at all, as exported models often come."""
    weights = [numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "conv_w"),
               numpy_helper.from_array(np.ones((4, 2), np.float32), "head_w")]
    nodes = [helper.make_node("Conv", ["image", "conv_w"], ["conv"]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["embedding"]),
             helper.make_node("MatMul", ["embedding", "head_w"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                            ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_a_cut_at_an_inner_tensor_without_value_info_gets_its_shape():
    model = tiny_classifier()
    assert not model.graph.value_info
    pruned = extract(model, "embedding")
    assert [out.name for out in pruned.graph.output] == ["embedding"]
    assert tensor_dims(pruned.graph.output[0]) == [None, 4]
    assert [node.op_type for node in pruned.graph.node] == ["Conv", "Relu", "GlobalAveragePool", "Flatten"]


def test_a_classifier_is_cut_where_its_head_starts(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_classifier(), str(path))
    pruned = classifier_embedding(str(path), {"dim": 4})
    assert tensor_dims(pruned.graph.output[0]) == [None, 4]
    with pytest.raises(DerivationError, match=r"expected \[N, 5\]"):
        classifier_embedding(str(path), {"dim": 5})


def test_a_cut_at_a_tensor_the_model_lacks_names_it():
    with pytest.raises(DerivationError, match="no tensor named 'nowhere'"):
        extract(tiny_classifier(), "nowhere")
