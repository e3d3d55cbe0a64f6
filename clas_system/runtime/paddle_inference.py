"""Paddle Inference: Paddle folders on CPU (oneDNN) or GPU (CUDA, TensorRT). Its run() holds
the GIL for the whole inference, so on CPU `backend: auto` prefers OpenVINO."""
import numpy as np

from ..errors import ModelError
from .model_files import paddle_model_files


class PaddlePredictor:
    def __init__(self, model_dir, params, max_batch_size=1, image_input=None):
        from paddle import inference

        if image_input is not None:
            raise ModelError("Paddle Inference cannot take uint8 images; the batch is normalised before it")
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
        import paddle
        device = (f"GPU {params.gpu_id}" + (" TensorRT" if params.use_tensorrt else "") if params.use_gpu
                  else f"CPU{' oneDNN' if params.enable_mkldnn else ''}, {params.cpu_threads} threads")
        self.description = f"Paddle Inference {paddle.__version__} {device}"
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
