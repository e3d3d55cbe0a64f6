"""Settings of the det_system module: only what differs from the defaults.

Every key, its default, what is allowed and what it does: docs/settings.md (generated from the
schema in params/; `python -m params.reference`). Each key is checked at start-up: a typo or a bad
value stops `hub serving start` with one line naming the key. After editing, run
`hub install hubmodules/det_system` again (PaddleHub serves its installed copy); config.json's
init_args override these.
"""

PARAMS = {
    # A PaddleDetection export instead of the built-in U²-Net-p saliency detector:
    # "model_dir": "/models/picodet_PPLCNet_x2_5_mainbody_lite_v1.0_infer",
}
