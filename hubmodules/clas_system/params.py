"""Settings of the clas_system module: data a deployer edits.

After editing, run `hub install hubmodules/clas_system` again (PaddleHub serves its installed
copy). Every key is checked at start-up: a typo or a bad value stops `hub serving start` with a
message naming the key. The README lists every setting. config.json's init_args override these
(flat keys like use_gpu or batch_size are routed to their section).
"""

PARAMS = {
    # A built-in model: "text_line_orientation" (PaddleOCR's text-line direction classifier,
    # Paddle Inference, labels 0/180) or "text_image_orientation" (PaddleClas PULC, ONNX,
    # labels 0/90/180/270). For your own model set preset to None and give model_dir, or
    # inference_config pointing at a PaddleClas inference_*.yaml.
    "preset": "text_line_orientation",
    "model_dir": None,
    "inference_config": None,
    # PaddleClas PreProcess.transform_ops / PostProcess; None: from the preset or the yaml.
    "preprocess": None,
    "postprocess": None,
    "predictor": {
        # "auto": OpenVINO on CPU (it releases the GIL; Paddle 3 inference.json folders, which
        # it cannot read, run on Paddle Inference); with use_gpu, Paddle Inference for Paddle
        # folders (TensorRT too) and ONNX Runtime for .onnx. Or name one: "openvino",
        # "paddle", "onnxruntime".
        "backend": "auto",
        # OpenVINO on CPU: "fp32", or "bf16" on CPUs that have it (faster; scores move by up
        # to 0.04; top-1 agreed on all 23 shared images, see the README).
        "cpu_precision": "fp32",
        "use_gpu": False,
        "gpu_id": 0,
        "gpu_mem": 500,
        "use_fp16": False,
        "use_tensorrt": False,
        "enable_mkldnn": True,
        "cpu_threads": 2,
        "ir_optim": True,
    },
    "serving": {
        "batch_size": 8,
        "batch_wait_ms": 5.0,
        # requests worked on at once, and how many more may wait (past that, or after
        # max_wait_ms of waiting, the answer is "overloaded", HTTP 503); SIGTERM lets requests in
        # flight finish for up to graceful_stop_s
        "request_threads": 16,
        "max_waiting_requests": 64,
        "max_wait_ms": 2000.0,
        "graceful_stop_s": 10.0,
        "host": "0.0.0.0",
        "api_token": None,
        "max_images_per_request": 64,
        "max_image_pixels": 40_000_000,
        "max_request_bytes": 64 * 1024 * 1024,
        "reduced_decode": True,
    },
}
