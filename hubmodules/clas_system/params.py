"""Settings of the clas_system module: only what differs from the defaults.

Every key, its default, what is allowed and what it does: docs/settings.md (generated from the
schema in params/; `python -m params.reference`). Each key is checked at start-up: a typo or a bad
value stops `hub serving start` with one line naming the key. After editing, run
`hub install hubmodules/clas_system` again (PaddleHub serves its installed copy); config.json's
init_args override these.
"""

PARAMS = {
    # Your own PaddleClas model instead of the built-in text-line orientation classifier:
    # "preset": None, "inference_config": "/models/MyModel/inference_cls.yaml",
}
