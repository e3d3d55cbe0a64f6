"""One interface over Paddle Inference, ONNX Runtime and OpenVINO: which backend runs a model,
loaded lazily in each process, and `ImageModel`, a predictor together with the preprocessing
that feeds it.

A model is a Paddle inference folder (inference.pdmodel + inference.pdiparams, or Paddle 3's
inference.json + inference.pdiparams; PaddleDetection's model.* names too), an .onnx file, or an
OpenVINO IR (an .xml file, or a folder holding model.xml: what clas-quantize writes).

`backend: auto` (measured on a 2-core CPU, see docs/models.md#backends): on CPU, OpenVINO for .onnx files and
.pdmodel folders (it releases the GIL, and needed a quarter of Paddle Inference's CPU time per
image on the text-line .pdmodel at batch 1, half of ONNX Runtime's on the PULC .onnx); Paddle
Inference for PIR inference.json folders, which OpenVINO cannot read. With use_gpu: Paddle
Inference for folders (CUDA, TensorRT), ONNX Runtime CUDA for .onnx.
"""
import dataclasses
import importlib.util
import logging
import os
import threading
from typing import Callable

import numpy as np

from .. import hooks
from ..errors import ModelError
from ..ops.preprocess import build_pipeline
from .model_files import openvino_ir, paddle_model_files
from .onnx_runtime import OnnxPredictor
from .openvino_runtime import OpenVinoPredictor, program_file
from .paddle_inference import PaddlePredictor
from .precision import PrecisionChoice, candidate_precisions, measured_choice

log = logging.getLogger("clas_system")

BACKENDS_TAKING_IMAGES = ("onnxruntime", "openvino")
SERVING_PROCESSES_ENV = "CLAS_SYSTEM_SERVING_PROCESSES"


def auto_backend(model_path, params):
    """The backend `auto` picks for this model and device (the rule in the module docstring)."""
    if openvino_ir(model_path):
        return "openvino"
    is_onnx = os.path.isfile(model_path)
    if params.use_gpu:
        return "onnxruntime" if is_onnx else "paddle"
    if importlib.util.find_spec("openvino") is None:
        return "onnxruntime" if is_onnx else "paddle"
    if not is_onnx and os.path.isdir(model_path) and paddle_model_files(model_path)[0].endswith(".json"):
        return "paddle"
    return "openvino"


def choose_backend(model_path, params):
    """'paddle', 'onnxruntime' or 'openvino' for this model, checked against the files and device."""
    backend = auto_backend(model_path, params) if params.backend == "auto" else params.backend
    if openvino_ir(model_path) and backend != "openvino":
        raise ModelError(f"{model_path}: an OpenVINO IR (clas-quantize's INT8 models) runs on backend 'openvino' "
                         f"(on CPU), not {backend!r}")
    if params.cpu_precision == "bf16" and backend != "openvino":
        raise ModelError(f"cpu_precision {params.cpu_precision!r} needs backend 'openvino' (this model runs on {backend})")
    if backend == "onnxruntime":
        if not os.path.isfile(model_path):
            raise ModelError(f"{model_path}: ONNX Runtime needs an .onnx file")
        if params.use_gpu:
            import onnxruntime
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise ModelError("use_gpu is true but this onnxruntime has no CUDA provider: "
                                 "pip install onnxruntime-gpu, or set use_gpu to false")
        return backend
    if backend == "openvino":
        if importlib.util.find_spec("openvino") is None:
            raise ModelError("backend 'openvino' needs the openvino package: pip install openvino")
        if params.use_gpu:
            raise ModelError("backend 'openvino' runs on CPU here; for use_gpu choose backend 'paddle' "
                             "(Paddle folders) or 'onnxruntime' (.onnx files)")
        program_file(model_path)
        return backend
    if not os.path.isdir(model_path):
        raise ModelError(f"{model_path}: Paddle Inference needs a model folder (or use an .onnx file)")
    paddle_model_files(model_path)
    if params.use_gpu:
        import paddle
        if not paddle.is_compiled_with_cuda():
            raise ModelError("use_gpu is true but the installed paddlepaddle is a CPU build: "
                             "pip install paddlepaddle-gpu (the package's [gpu] extra), or set use_gpu to false")
    return backend


def int8_candidate(params, backend):
    """int8_model_dir's IR file, checked: timed beside fp32 and bf16 under cpu_precision auto."""
    if params.int8_model_dir is None:
        return None
    if params.cpu_precision != "auto":
        raise ModelError(f"int8_model_dir is a candidate of cpu_precision 'auto' only (cpu_precision is "
                         f"{params.cpu_precision!r}); set it to auto, or serve the INT8 model as model_dir")
    if backend != "openvino":
        raise ModelError(f"int8_model_dir needs backend 'openvino' (this model runs on {backend})")
    ir = openvino_ir(os.path.expanduser(params.int8_model_dir))
    if ir is None:
        raise ModelError(f"int8_model_dir: {params.int8_model_dir} is not an OpenVINO IR (.xml, or a folder "
                         f"holding model.xml, as clas-quantize writes)")
    return ir


BACKEND_CLASSES = {"openvino": OpenVinoPredictor, "onnxruntime": OnnxPredictor, "paddle": PaddlePredictor}


def cpu_share(models_side_by_side=1):
    """A model's share of the CPUs: serving processes on one machine each get an equal part, so
    several are never slower than one (SERVING_PROCESSES_ENV: set by the serving layer), and models
    that run side by side in one process (a recognizer's detector and feature model, each busy
    with another request) split their process's part, so their threads never outnumber the cores."""
    processes = int(os.environ.get(SERVING_PROCESSES_ENV) or 1)
    return max(1, (os.cpu_count() or 1) // max(1, processes) // max(1, models_side_by_side))


def create_predictor(model_path, params, max_batch_size=1, image_input=None, backend=None):
    """A loaded predictor: `.input_names`, `.output_names`, `.run({name: array}) -> [arrays]`.
    With `image_input` its first input takes uint8 NHWC images (OpenVINO and ONNX Runtime)."""
    backend = backend or choose_backend(model_path, params)
    return BACKEND_CLASSES[backend](model_path, params, max_batch_size, image_input)


class LazyPredictor:
    """Checks the model now, loads it on first use in each process.

    `hub serving start --use_multiprocess` forks gunicorn workers after the module is built; a
    predictor made (and run with several threads) before the fork deadlocks in the children.
    Runs are serialised: Paddle predictors are not safe to call from two threads at once.

    With `image_input` and a backend that can, `run_images` feeds uint8 NHWC images to a copy of
    the model that normalises them itself; `run` keeps the model as it is (float input), and
    each is loaded only when first used.

    `cpu_precision: auto` is decided by the first batch run in each process (runtime/precision.py);
    `.precision` says what was chosen and how, once it is.
    """

    def __init__(self, model_path, params, max_batch_size=1, image_input=None):
        self.backend = choose_backend(model_path, params)
        self.model_path = model_path
        self.image_input = image_input if self.backend in BACKENDS_TAKING_IMAGES else None
        self._params = params
        self._max_batch_size = max_batch_size
        self._lock = threading.Lock()
        self._owner_pid = None
        self._loaded_models = {}
        self.precision = None
        self.int8_model = int8_candidate(params, self.backend)
        self.models_side_by_side = 1  # cpu_share's: set by whoever runs this model beside others

    @property
    def model_name(self):
        """The model's file or folder name, as metrics and /ready name it."""
        return os.path.basename(self.model_path.rstrip(os.sep))

    def _loaded(self, image_input=None, feeds=None):
        if self._owner_pid != os.getpid():
            self._loaded_models = {}
            self.precision = None
            self._owner_pid = os.getpid()
        if image_input not in self._loaded_models:
            self._loaded_models[image_input] = self._load(image_input)
        if self.precision is None and feeds is not None:
            self._loaded_models[image_input] = self._measured(image_input, feeds)
        return self._loaded_models[image_input]

    def _load(self, image_input):
        if self._params.cpu_threads is None:
            self._params = dataclasses.replace(self._params, cpu_threads=cpu_share(self.models_side_by_side))
        precision = self.precision.precision if self.precision else self._params.cpu_precision
        try:
            predictor = self._create(image_input, precision)
        except ModelError as err:
            if self._params.backend != "auto" or self.backend != "openvino" or openvino_ir(self.model_path):
                raise
            # auto only: a model OpenVINO cannot convert still runs, on the runtime made for it.
            self.backend = "onnxruntime" if os.path.isfile(self.model_path) else "paddle"
            if self.backend not in BACKENDS_TAKING_IMAGES:
                self.image_input = image_input = None
            log.warning("%s; backend auto runs it on %s instead", err, self.backend)
            predictor = self._create(image_input, precision)
            self._loaded_models[image_input] = predictor
        log.info("%s: %s%s", self.model_path, predictor.description,
                 ", uint8 image input normalised in the graph" if image_input else "")
        if self.precision is None and self._params.cpu_precision != "auto":
            self._chosen(PrecisionChoice(self._params.cpu_precision, "setting"))
        elif (self.precision is None and len(candidate_precisions(self.backend, self.model_path)) == 1
              and self.int8_model is None):
            self._chosen(PrecisionChoice("fp32", "only candidate"))
        return predictor

    def _create(self, image_input, precision):
        """The predictor at `precision`; 'int8' is int8_model_dir's model with its float parts at fp32."""
        hint = "fp32" if precision in ("auto", "int8") else precision
        params = dataclasses.replace(self._params, cpu_precision=hint)
        path = self.int8_model if precision == "int8" else self.model_path
        return create_predictor(path, params, self._max_batch_size, image_input, self.backend)

    def _measured(self, image_input, feeds):
        """auto: the fastest of this graph at each candidate precision on `feeds`; kept for this process."""
        predictors = {"fp32": self._loaded_models[image_input]}
        others = [p for p in candidate_precisions(self.backend, self.model_path) if p != "fp32"]
        others += ["int8"] if self.int8_model else []
        predictors.update({p: self._create(image_input, p) for p in others})
        rows = len(next(iter(feeds.values())))
        precision, choice = measured_choice(predictors, feeds, max(rows, self._max_batch_size))
        self._chosen(choice)
        return predictors[precision]

    def _chosen(self, choice):
        self.precision = choice
        log.info("%s: runs at %s (%s%s)", self.model_path, choice.precision, choice.chosen_by,
                 f": fastest batch of {choice.batch_size} in ms {choice.batch_ms}" if choice.batch_ms else "")
        hooks.PRECISION_CHOSEN(self.model_name, choice.describe())

    @property
    def input_names(self):
        with self._lock:
            return self._loaded().input_names

    @property
    def output_names(self):
        with self._lock:
            return self._loaded().output_names

    def run(self, feeds):
        with self._lock:
            return self._loaded(None, feeds).run(feeds)

    def run_images(self, images, to_batch):
        """uint8 HWC images of one size -> outputs: normalised in the graph where the backend
        can, else by `to_batch` (list of images -> float32 batch) before the model."""
        with self._lock:
            if self.image_input is not None:
                predictor = self._loaded(self.image_input)
                if self.image_input is not None:  # auto may have fallen back to Paddle Inference
                    feeds = {predictor.input_names[0]: np.stack(images)}
                    return self._loaded(self.image_input, feeds).run(feeds)
            predictor = self._loaded()
            feeds = {predictor.input_names[0]: to_batch(images)}
            return self._loaded(None, feeds).run(feeds)


@dataclasses.dataclass(frozen=True)
class ImageModel:
    """A LazyPredictor and the preprocessing feeding it. `prepare` runs per image (the geometric
    ops, giving uint8 images where the tensor part runs per batch); `run` takes a list of those,
    or of float tensors already preprocessed (PaddleClas's ndarray protocol), in any mix."""
    predictor: LazyPredictor
    prepare: Callable  # HWC uint8 image -> per-image array for `run`
    to_batch: Callable  # list of prepare() results -> float32 model input

    def run(self, items):
        """Per-image arrays -> the model's first output, one row per item, in order."""
        images = [i for i, item in enumerate(items) if item.dtype == np.uint8]
        if len(images) == len(items):
            return self._run_images(items)
        tensors = [i for i, item in enumerate(items) if item.dtype != np.uint8]
        out = None
        for indices, run in ((images, self._run_images), (tensors, self._run_tensors)):
            if indices:
                rows = run([items[i] for i in indices])
                if out is None:
                    out = np.empty((len(items),) + rows.shape[1:], rows.dtype)
                out[indices] = rows
        return out

    def _run_images(self, images):
        return self.predictor.run_images(images, self.to_batch)[0]

    def _run_tensors(self, tensors):
        return self.predictor.run({self.predictor.input_names[0]: np.stack(tensors)})[0]


def build_image_model(model_path, ops, params, max_batch_size=1):
    """(model path, typed preprocess ops, PredictorParams) -> ImageModel; loads nothing yet."""
    pipeline = build_pipeline(ops)
    predictor = LazyPredictor(model_path, params, max_batch_size, pipeline.image_input)
    return ImageModel(predictor=predictor, prepare=pipeline.prepare, to_batch=pipeline.to_batch)
