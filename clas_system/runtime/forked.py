"""Run model work that start-up needs in a forked child, so the serving process never runs a model
before gunicorn forks its workers.

A process that has run OpenVINO or Paddle Inference cannot hand working runtimes to forked
children: their thread pools do not survive a fork (OpenVINO's workers abort with
`std::system_error`, Paddle's deadlock). Start-up work that must run a model (probing the
embedding size, building a gallery from a list) runs here instead; only its result comes back.
"""
import os
import pickle
import traceback

from ..errors import ChildFailed


def child_payload(function, args):
    """What the child sends: its pickled result or exception; a ChildFailed with the text of
    either when it cannot be pickled."""
    try:
        outcome = ("ok", function(*args))
    except BaseException as err:  # noqa: BLE001 - every failure is handed to the parent
        outcome = ("error", err)
    try:
        return pickle.dumps(outcome)
    except Exception as err:  # noqa: BLE001 - whatever cannot be pickled, its text still gets across
        if outcome[0] == "error":
            text = "".join(traceback.format_exception(outcome[1]))
        else:
            text = f"its result ({type(outcome[1]).__name__}) cannot be sent back: {type(err).__name__}: {err}"
        return pickle.dumps(("error", ChildFailed(f"the start-up child process failed: {text}")))


def run_in_child(function, *args):
    """function(*args) in a forked child -> its (picklable) result; its exception re-raised here."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, and always leave here, never running the parent's code
        code = 1
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(child_payload(function, args))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        raise ChildFailed(f"the start-up child process died (wait status {status}) before answering")
    kind, value = pickle.loads(payload)
    if kind == "error":
        raise value
    return value
