"""Settings of the rec_system module: data a deployer edits.

After editing, run `hub install hubmodules/rec_system` again (PaddleHub serves its installed
copy). Every key is checked at start-up: a typo or a bad value stops `hub serving start` with a
message naming the key. config.json's init_args override these (flat keys are routed to their
section: index_dir, data_file -> gallery; feature_norm -> feature; use_gpu -> predictor; ...).
"""

PARAMS = {
    "feature": {
        # "pplcnet_pulc_1280": PP-LCNet's 1280-d pooled features, derived from the packaged PULC
        # text_image_orientation model (`python -m clas_system.models prepare`). For a PaddleClas
        # recognition model set preset to None and give model_dir and its RecPreProcess ops.
        "preset": "pplcnet_pulc_1280",
        "model_dir": None,
        "preprocess": None,
        "feature_norm": True,
        "binarize": False,  # sign bits for dist_type "hamming"
    },
    # None: the whole image is the only region. A PaddleDetection mainbody detector, e.g.
    # {"model_dir": "/models/picodet_PPLCNet_x2_5_mainbody_lite_v1.0_infer", "threshold": 0.2,
    #  "max_det_results": 5}; it runs with the predictor and serving settings below.
    "detector": None,
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
    "return_k": 5,
    "score_thres": 0.5,
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
        "request_threads": 64,
        "host": "0.0.0.0",
        "api_token": None,
        "max_images_per_request": 64,
        "max_image_pixels": 40_000_000,
        "max_request_bytes": 64 * 1024 * 1024,
    },
}
