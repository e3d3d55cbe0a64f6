"""How models run. predictor: which backend runs a model (paddle_inference, onnx_runtime,
openvino_runtime, one file each, all with the same small surface), loaded lazily in each
process; model_files and model_checks: the files on disk and what they declare;
derived_models: the built-in feature models cut out of packaged ONNX files; batching: requests
merged into model batches; forked: start-up model work run in a child process."""
