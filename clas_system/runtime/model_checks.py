"""Mismatches between settings and the model file, caught when the module starts.

PaddleClas's FAQ lists the class-count mismatch as a common trap: a label list whose length
differs from the model's classes gives answers carrying the wrong names, silently. Here the
model's declared input and output shapes are read from the file (no predictor is created, so
nothing runs before gunicorn forks) and compared with the labels and the preprocessing.
"""
from params.schema import ParamsError

from .openvino_runtime import program_file


def declared_shapes(model_path):
    """(first input dims, first output dims) as declared in the model file; None for a
    dimension left dynamic, and (None, None) when the file's format cannot be read this way
    (a Paddle 3 inference.json program)."""
    import openvino

    try:
        model = openvino.Core().read_model(program_file(model_path))
    except RuntimeError:
        return None, None

    def dims(port):
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic:
            return None
        return tuple(d.get_length() if d.is_static else None for d in shape)

    return dims(model.inputs[0]), dims(model.outputs[0])


def check_labels(labels, output_dims, where):
    """One label per class: the model's output [N, classes] against the label list."""
    if labels is None or output_dims is None or len(output_dims) != 2 or output_dims[1] is None:
        return
    if len(labels) != output_dims[1]:
        raise ParamsError(f"{where}: {len(labels)} labels given, but the model gives {output_dims[1]} classes "
                          f"(output [N, {output_dims[1]}]); the label list (label_list or class_id_map_file) "
                          f"needs exactly one name per class")


def check_input(tensor_shape, input_dims, where):
    """The preprocessing's (C, H, W) against the model's declared [N, C, H, W]."""
    if input_dims is None or len(input_dims) != len(tensor_shape) + 1:
        return
    for given, wanted in zip(tensor_shape, input_dims[1:]):
        if wanted is not None and given != wanted:
            expected = "x".join("?" if d is None else str(d) for d in input_dims[1:])
            raise ParamsError(f"{where}: the ops give {'x'.join(map(str, tensor_shape))} tensors, "
                              f"but the model takes {expected} (? is any size)")
