"""The served rows of `python -m bench.run`: our server and PaddleClas's hub module under wrk,
8 clients, on the same images, one body protocol per row:

    file protocol        JSON, each image file as base64 (PaddleHub's protocol), one image per request
    binary body          the image file as the body (Content-Type: image/*), one image per request
    multipart, 8 images  multipart/form-data holding 8 image files per request
    ndarray protocol     PaddleClas's: the client decodes and preprocesses, a float32 tensor in base64
"""
from pathlib import Path

from clas_system.client.encode import ndarray_to_b64
from clas_system.ops.decode import decode_image
from harness.hub_server import HUB, HUB_MODULES, install_hub_modules, start_hub_server
from harness.payloads import file_body, json_body
from harness.wrk import served_row, write_bodies

from . import paddleclas_hub

BOUNDARY = "bench-boundary-7d1f"
MULTIPART_IMAGES = 8
ENCODED = ("file protocol", "binary body", f"multipart, {MULTIPART_IMAGES} images per request")
# (init_args, use_multiprocess, protocols): 2 workers of one math thread each, as issue 9 measured them.
OUR_SERVERS = {"one process": ({}, False, (*ENCODED, "ndarray protocol")),
               "2 workers": ({"cpu_threads": 1}, True, (*ENCODED, "ndarray protocol")),
               # the model on one thread, decoding on the other core
               "one process, cpu_threads 1": ({"cpu_threads": 1}, False, ENCODED),
               # explicit fp32 beside `cpu_precision: auto`, which measures and keeps the faster
               "one process, fp32": ({"cpu_precision": "fp32"}, False, ENCODED[1:2])}
THEIR_SERVERS = {"one process": (2, False), "2 workers": (1, True)}  # (cpu_num_threads, use_multiprocess)


def float_tensor(engine, data):
    """The whole preprocessing as float32 CHW (what PaddleClas's ndarray clients send)."""
    return engine.preprocess(decode_image(data, to_rgb=engine.to_rgb))


def ndarray_body(engine, data):
    text, revert = ndarray_to_b64(float_tensor(engine, data)[None])
    return json_body({"images": text, "revert_params": revert})


def multipart_body(files):
    parts = [b"--" + BOUNDARY.encode() + b'\r\nContent-Disposition: form-data; name="images"\r\n\r\n' + data + b"\r\n"
             for data in files]
    return b"".join(parts) + b"--" + BOUNDARY.encode() + b"--\r\n"


def protocols(engine, data):
    """{protocol: (bodies, content type, images per request)}."""
    rotated = [[data[(start + i) % len(data)] for i in range(MULTIPART_IMAGES)] for start in range(len(data))]
    return {"file protocol": ([file_body(d) for d in data], "application/json", 1),
            "binary body": (list(data), "image/jpeg", 1),
            ENCODED[2]: ([multipart_body(files) for files in rotated],
                         f"multipart/form-data; boundary={BOUNDARY}", MULTIPART_IMAGES),
            "ndarray protocol": ([ndarray_body(engine, d) for d in data], "application/json", 1)}


def served_rows(wrk, spec, data, engine, workdir, mode, paddleclas_src):
    bodies = protocols(engine, data)
    lists = {name: write_bodies(workdir, f"protocol{i}", b[0]) for i, (name, b) in enumerate(bodies.items())}
    hub_home = Path(workdir) / "hub_home"
    install_hub_modules(hub_home, [HUB_MODULES / "clas_system"])
    targets = [(f"ours, {label}", HUB, {"preset": spec["preset"], "host": "127.0.0.1", **init_args},
                multiprocess, None, workdir, served)
               for label, (init_args, multiprocess, served) in OUR_SERVERS.items()]
    if paddleclas_src:
        for label, (threads, multiprocess) in THEIR_SERVERS.items():
            their_dir = Path(workdir) / f"paddleclas_{threads}"
            hub, cwd, their_env = paddleclas_hub.prepare_hub_module(paddleclas_src, their_dir, spec["preset"], threads)
            targets.append((f"PaddleClas hub module, {label}", hub, paddleclas_hub.hub_init_args(), multiprocess,
                            their_env, cwd, ("ndarray protocol",)))
    rows = {}
    for title, hub, init_args, multiprocess, server_env, cwd, served in targets:
        try:
            server = start_hub_server(hub_home, workdir, modules={"clas_system": init_args},
                                      use_multiprocess=multiprocess, hub=hub, env=server_env, cwd=cwd)
        except RuntimeError as err:
            rows[title] = {"unavailable": f"server did not start: ...{str(err)[-300:]}"}
            continue
        try:
            for protocol in served:
                name = f"{title}, {protocol}"
                print(f"  {name} ...", flush=True)
                protocol_bodies, content_type, images_per_request = bodies[protocol]
                try:
                    rows[name] = served_row(wrk, server, "clas_system", protocol_bodies, lists[protocol],
                                            mode.seconds, mode.warmup_seconds, content_type, images_per_request)
                except RuntimeError as err:
                    rows[name] = {"unavailable": str(err)[-400:]}
        finally:
            server.stop()
    return rows
