"""One interface over Paddle Inference and ONNX Runtime: `create_predictor(path, params).run(feeds)`.

A model is a Paddle inference folder (inference.pdmodel + inference.pdiparams, or Paddle 3's
inference.json + inference.pdiparams; PaddleDetection's model.* names too) or an .onnx file.
"""
import os
import threading

import numpy as np

PADDLE_MODEL_STEMS = ("inference", "model")


class ModelError(RuntimeError):
    """The model files are missing or do not fit, or the device asked for is not available."""


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


def choose_backend(model_path, params):
    """'paddle' or 'onnxruntime' for this model, checked against the files and the device."""
    backend = params.backend
    if backend == "auto":
        backend = "onnxruntime" if model_path.endswith(".onnx") else "paddle"
    if backend == "onnxruntime":
        if not os.path.isfile(model_path):
            raise ModelError(f"{model_path}: ONNX Runtime needs an .onnx file")
        if params.use_gpu:
            import onnxruntime
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise ModelError("use_gpu is true but this onnxruntime has no CUDA provider: "
                                 "pip install onnxruntime-gpu, or set use_gpu to false")
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


class PaddlePredictor:
    def __init__(self, model_dir, params, max_batch_size=1):
        from paddle import inference

        program, weights = paddle_model_files(model_dir)
        config = inference.Config(program, weights)
        if params.use_gpu:
            precision = inference.PrecisionType.Half if params.use_fp16 else inference.PrecisionType.Float32
            config.enable_use_gpu(params.gpu_mem, params.gpu_id, precision)
            if params.use_tensorrt:
                trt_precision = {"fp32": inference.PrecisionType.Float32, "fp16": inference.PrecisionType.Half,
                                 "int8": inference.PrecisionType.Int8}[params.trt_precision]
                config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=max_batch_size,
                                              min_subgraph_size=params.trt_min_subgraph_size,
                                              precision_mode=trt_precision, use_static=False,
                                              use_calib_mode=params.trt_precision == "int8")
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(params.cpu_threads)
            if params.enable_mkldnn:
                config.enable_mkldnn()
                config.set_mkldnn_cache_capacity(10)
            else:
                config.disable_mkldnn()
        config.switch_ir_optim(params.ir_optim)
        if program.endswith(".pdmodel"):
            # Paddle 3.3's memory_optimize_pass fails on PIR (inference.json) programs on CPU:
            # "Not find predictor_id 0 and pass_name memory_optimize_pass".
            config.enable_memory_optim()
        config.disable_glog_info()
        config.switch_use_feed_fetch_ops(False)
        try:
            self._predictor = inference.create_predictor(config)
        except Exception as err:  # Paddle raises its own C++ error types
            raise ModelError(f"{model_dir}: Paddle Inference could not load the model: {err}") from err
        self.input_names = tuple(self._predictor.get_input_names())
        self.output_names = tuple(self._predictor.get_output_names())

    def run(self, feeds):
        for name in self.input_names:
            handle = self._predictor.get_input_handle(name)
            array = np.ascontiguousarray(feeds[name])
            handle.reshape(array.shape)
            handle.copy_from_cpu(array)
        self._predictor.run()
        return [self._predictor.get_output_handle(name).copy_to_cpu() for name in self.output_names]


class OnnxPredictor:
    def __init__(self, model_file, params, max_batch_size=1):
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
            self._session = onnxruntime.InferenceSession(model_file, options, providers=providers)
        except Exception as err:  # onnxruntime raises its own pybind error types
            raise ModelError(f"{model_file}: ONNX Runtime could not load the model: {err}") from err
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())

    def run(self, feeds):
        return self._session.run(list(self.output_names), {n: feeds[n] for n in self.input_names})


def create_predictor(model_path, params, max_batch_size=1):
    """A loaded predictor: `.input_names`, `.output_names`, `.run({name: array}) -> [arrays]`."""
    backend = choose_backend(model_path, params)
    cls = OnnxPredictor if backend == "onnxruntime" else PaddlePredictor
    return cls(model_path, params, max_batch_size)


class LazyPredictor:
    """Checks the model now, loads it on first use in each process.

    `hub serving start --use_multiprocess` forks gunicorn workers after the module is built; a
    predictor made (and run with several threads) before the fork deadlocks in the children.
    Runs are serialised: Paddle predictors are not safe to call from two threads at once.
    """

    def __init__(self, model_path, params, max_batch_size=1):
        choose_backend(model_path, params)
        self.model_path = model_path
        self._args = (model_path, params, max_batch_size)
        self._lock = threading.Lock()
        self._owner_pid = None
        self._predictor = None

    def _loaded(self):
        if self._owner_pid != os.getpid():
            self._predictor = create_predictor(*self._args)
            self._owner_pid = os.getpid()
        return self._predictor

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
            return self._loaded().run(feeds)
