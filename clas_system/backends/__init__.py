"""The runtimes a model can run on, one module each, all with the same small surface:

    predictor = OpenVinoPredictor(model_path, params, max_batch_size, image_input=None)
    predictor.input_names, predictor.output_names
    predictor.run({name: array}) -> [arrays, in output_names order]

With an `image_input` (clas_system.preprocess.ImageInput) the first input takes uint8 NHWC
images and the graph does the cast, mean/std and layout itself. `clas_system.predictor` picks
the backend and loads it lazily.
"""
import os

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
