"""A settings mistake stops `hub serving start` with one line (which key, what is wrong, what to
do) and a non-zero exit, without a traceback; CLAS_SYSTEM_DEBUG=1 brings the traceback back."""
import pytest
from conftest import run_to_exit

from harness.hub_server import hub_env, launch_hub_server

BAD = {"clas_system": {"batch_size": 0}}
LINE = ("clas_system: cannot start: clas_system.serving.batch_size: 0 is too small; the minimum is 1 "
        "(set it in hubmodules/clas_system/params.py")


def test_a_settings_mistake_is_one_line_without_a_traceback(hub_home, tmp_path):
    code, log = run_to_exit(hub_home, tmp_path, BAD)
    assert code == 2, log[-3000:]
    said = [line for line in log.splitlines() if "cannot start" in line]
    assert len(said) == 1 and said[0].startswith(LINE), log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_the_debug_flag_shows_the_traceback(hub_home, tmp_path):
    server = launch_hub_server(hub_home, tmp_path, modules=BAD, env=hub_env(hub_home, CLAS_SYSTEM_DEBUG="1"))
    code = server.wait_exit(120)
    assert code != 0
    assert "Traceback" in server.log() and "ParamsError: clas_system.serving.batch_size" in server.log()


@pytest.mark.parametrize("modules, key", [
    ({"det_system": {"threshold": 2}}, "det_system.threshold: 2.0 is too large"),
    ({"rec_system": {"gallery": {"index_backend": "milvus"}}}, "rec_system.gallery.milvus.uri: index_backend milvus"),
])
def test_every_module_says_it_in_one_line(hub_home, tmp_path, modules, key):
    code, log = run_to_exit(hub_home, tmp_path, modules)
    assert code == 2 and f"cannot start: {key}" in log and "Traceback" not in log, log[-3000:]
