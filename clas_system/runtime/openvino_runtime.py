"""OpenVINO on CPU: reads .onnx files and Paddle .pdmodel programs directly (not Paddle 3's PIR
inference.json), and its infer() releases the GIL. For uint8 image input the cast, mean/std and
layout go into the graph with OpenVINO's PrePostProcessor.

Precision is set explicitly: OpenVINO otherwise runs bf16 on CPUs that have it, which moved
the PULC model's probabilities by up to 9e-3. `cpu_precision: auto` is chosen by timing in
LazyPredictor (runtime/precision.py); a predictor made on its own runs auto as fp32. The server
runs one batch at a time per process, so one stream (LATENCY) with all `cpu_threads` on that batch.
Its threads are pinned to cores only when they are all the CPUs the process may use: OpenVINO
pins each process's threads to the first cores, so gunicorn workers or servers side by side, each
with its share, would all run on the same cores.
"""
import os

from ..errors import ModelError
from .model_files import openvino_ir, paddle_model_files

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def pins_threads(threads):
    """Whether `threads` inference threads are pinned to cores: only when they take every CPU this
    process may run on (the module docstring says why)."""
    return threads >= len(os.sched_getaffinity(0))


def program_file(model_path):
    """The file OpenVINO reads: the .onnx or .xml file, an IR folder's model.xml, or a Paddle
    folder's .pdmodel program."""
    if os.path.isfile(model_path):
        return model_path
    if openvino_ir(model_path):
        return openvino_ir(model_path)
    program, _weights = paddle_model_files(model_path)
    if program.endswith(".json"):
        raise ModelError(f"{program}: OpenVINO cannot read Paddle 3's PIR programs (inference.json); "
                         f"use backend 'paddle', or export the model to ONNX")
    return program


def with_image_input(model, image_input):
    """The model with its first input taking uint8 NHWC images, normalised inside the graph.
    PrePostProcessor's mean/scale compute (x - mean/scale) / (std/scale): the same values as
    PaddleClas's (x * scale - mean) / std to within 2e-7, and faster than spelling that out."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    scale = image_input.scale
    ppp = PrePostProcessor(model)
    image = ppp.input(0)
    image.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    image.preprocess().convert_element_type(ov.Type.f32) \
        .mean([m / scale for m in image_input.mean]).scale([s / scale for s in image_input.std])
    image.model().set_layout(ov.Layout("NCHW" if image_input.channel_first else "NHWC"))
    return ppp.build()


class OpenVinoPredictor:
    def __init__(self, model_path, params, max_batch_size=1, image_input=None):
        import openvino as ov

        if params.use_gpu:
            raise ModelError("backend 'openvino' runs on CPU here; for use_gpu choose backend 'paddle' "
                             "(Paddle folders) or 'onnxruntime' (.onnx files)")
        core = ov.Core()
        if params.cpu_precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise ModelError("cpu_precision 'bf16': this CPU has no bf16 support (AVX512-BF16 or AMX); use 'fp32' "
                             "or 'auto'")
        precision = "bf16" if params.cpu_precision == "bf16" else "fp32"
        program = program_file(model_path)
        try:
            model = core.read_model(program)
            if image_input is not None:
                model = with_image_input(model, image_input)
            self._compiled = core.compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
                "INFERENCE_NUM_THREADS": params.cpu_threads,
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1,
                "ENABLE_CPU_PINNING": pins_threads(params.cpu_threads),
            })
        except RuntimeError as err:  # OpenVINO reports every read/convert/compile failure so
            raise ModelError(f"{program}: OpenVINO could not load the model: {err}") from err
        self._request = self._compiled.create_infer_request()
        compiled = self._compiled.get_property
        self.description = (f"OpenVINO {ov.get_version().split('-')[0]} CPU, {compiled('INFERENCE_PRECISION_HINT').to_string()}, "
                            f"{compiled('INFERENCE_NUM_THREADS')} threads, {compiled('NUM_STREAMS')} stream"
                            f"{', pinned to cores' if compiled('ENABLE_CPU_PINNING') else ''}")
        self.input_names = tuple(i.get_any_name() for i in self._compiled.inputs)
        self.output_names = tuple(o.get_any_name() for o in self._compiled.outputs)

    def run(self, feeds):
        results = self._request.infer({name: feeds[name] for name in self.input_names})
        return [results[output] for output in self._compiled.outputs]
