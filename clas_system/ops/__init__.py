"""Image operations, PaddleClas-compatible: decoding untrusted bytes (decode), the preprocess
ops of classification and recognition models (preprocess) and of PaddleDetection exports
(detect_preprocess), and classification outputs to results (postprocess). Each builder takes
typed op settings from params and returns one callable."""
