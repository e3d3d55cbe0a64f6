"""Settings of the rec_system module: only what differs from the defaults.

Every key, its default, what is allowed and what it does: docs/settings.md (generated from the
schema in params/; `python -m params.reference`). Each key is checked at start-up: a typo or a bad
value stops `hub serving start` with one line naming the key. After editing, run
`hub install hubmodules/rec_system` again (PaddleHub serves its installed copy); config.json's
init_args override these (flat keys go to their section: index_dir -> gallery, use_gpu ->
predictor, ...).
"""

PARAMS = {
    # PaddleClas's PP-ShiTu config, read as it is: "inference_config": "deploy/configs/inference_general.yaml",
    # A gallery kept elsewhere, built at the first start from a gallery list:
    # "gallery": {"index_dir": "/srv/gallery", "data_file": "gallery_list.txt", "image_root": "images/"},
}
