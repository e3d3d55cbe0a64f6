"""PaddleClas's own hub module (deploy/hubserving/clas of a PaddleClas source tree) serving one of
our presets, for `python -m bench.run --paddleclas-src PATH`.

Get the tree (the bench was written against commit d178931):

    git clone https://github.com/PaddlePaddle/PaddleClas /tmp/PaddleClas
    git -C /tmp/PaddleClas checkout d178931

Only its deploy/{hubserving,python,utils} folders are used, copied into a temporary folder (the
tree is never written to). What it takes to run there, and why:
- its Python: the reference venv with paddlehub added (harness.paddleclas_reference.reference_hub_python):
  the module decodes with np.fromstring, which numpy 2 removed;
- deploy/python imports `paddleclas.deploy...`: a stub `paddleclas` package whose `deploy` is the
  copied folder (PaddleClas's real package __init__ imports its training code);
- module.py does sys.path.insert(0, "."): the server runs in the copied deploy/ folder;
- Paddle 3 reads inference.pdmodel only with FLAGS_enable_pir_api=0;
- its settings live in hubserving/clas/params.py (its README says to edit that file): the copy
  gets one naming our model, label list, mkldnn, ir_optim, threads and batch size 1 (its clients
  send one image per request here).
Its protocol is PaddleClas's ndarray one: the client decodes and preprocesses, and posts
{"images": base64 of float32 NCHW bytes, "revert_params": {"shape", "dtype"}}.
"""
import os
import pprint
import shutil
import subprocess
from pathlib import Path

from harness.hub_server import HubServerError, hub_env, install_hub_modules
from harness.paddleclas_reference import preset_config, reference_hub_python

DEPLOY_PARTS = ("hubserving", "python", "utils")
TESTED_COMMIT = "d178931"


class PaddleClasHubError(RuntimeError):
    """The source tree is not usable, or its hub module could not be installed."""


def source_commit(src):
    """The tree's git commit, or None when it is not a git checkout."""
    done = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def params_py(config):
    """hubserving/clas/params.py naming our model (the module reads get_default_confg())."""
    return ('"""Written by bench/paddleclas_hub.py: serve one of paddleclas-serving\'s preset models."""\n\n\n'
            f"def get_default_confg():\n    return {pprint.pformat(config, indent=4)}\n")


def prepare_hub_module(src, workdir, preset, cpu_threads):
    """Copy the module and its deploy code into workdir, install it into a HUB_HOME there.
    -> (hub executable, cwd to serve from, environment)."""
    src, workdir = Path(src).resolve(), Path(workdir)
    module_dir = src / "deploy" / "hubserving" / "clas"
    if not (module_dir / "module.py").is_file():
        raise PaddleClasHubError(f"{src}: no deploy/hubserving/clas/module.py; pass a PaddleClas source tree")
    deploy = workdir / "tree" / "deploy"
    for part in DEPLOY_PARTS:
        shutil.copytree(src / "deploy" / part, deploy / part, ignore=shutil.ignore_patterns("*.ttf", "__pycache__"))
    # no PreProcess: with this module the client sends preprocessed tensors
    config = {k: v for k, v in preset_config(preset, workdir, batch_size=1, cpu_threads=cpu_threads).items()
              if k != "PreProcess"}
    (deploy / "hubserving" / "clas" / "params.py").write_text(params_py(config))
    stub = workdir / "stub" / "paddleclas"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('"""Stub: PaddleClas deploy code without its training package."""\n')
    (stub / "deploy").symlink_to(deploy)

    python = reference_hub_python()
    hub = str(python.with_name("hub"))
    env = hub_env(workdir / "hub_home", PYTHONPATH=str(workdir / "stub"), FLAGS_enable_pir_api="0",
                  GLOG_minloglevel="2")
    try:
        install_hub_modules(workdir / "hub_home", [deploy / "hubserving" / "clas"], hub=hub, env=env, cwd=deploy)
    except HubServerError as err:
        raise PaddleClasHubError(str(err)) from err
    return hub, deploy, env


def hub_init_args():
    """config.json init_args of PaddleClas's module (its __init__ takes use_gpu, enable_mkldnn)."""
    return {"version": "1.0.0", "use_gpu": False, "enable_mkldnn": True}


def environment_note(src):
    commit = source_commit(src)
    return {"paddleclas_src": str(src), "commit": commit, "tested_commit": TESTED_COMMIT,
            "python": str(reference_hub_python()), "flags": "FLAGS_enable_pir_api=0",
            "cpu_count": os.cpu_count()}
