"""A served module that cannot start says why in one line and exits, without a traceback.

    with exit_on_startup_error("clas_system"):
        settings = load_classifier_settings(PARAMS, init_args)
        ...

A settings mistake (ParamsError) or a model, gallery or built-in model that does not fit (the
engine's ClasSystemError) stops `hub serving start` with, on stderr:

    clas_system: cannot start: clas_system.serving.batch_size: 0 is too small; the minimum is 1 (set it
    in hubmodules/clas_system/params.py, then `hub install hubmodules/clas_system`, or in config.json's
    init_args) [CLAS_SYSTEM_DEBUG=1 shows the traceback]

and exit status 2. With CLAS_SYSTEM_DEBUG=1 the error propagates with its traceback instead.
"""
import os
import sys
from contextlib import contextmanager

from params import ParamsError

from ..errors import ClasSystemError

DEBUG_ENV = "CLAS_SYSTEM_DEBUG"
EXIT_STARTUP_ERROR = 2


def startup_line(module, err):
    """The one line: which module, the error (it names the key and what is wrong), what to do."""
    line = f"{module}: cannot start: {' '.join(str(err).split())}"
    if isinstance(err, ParamsError):
        line += (f" (set it in hubmodules/{module}/params.py, then `hub install hubmodules/{module}`, "
                 f"or in config.json's init_args)")
    return f"{line} [{DEBUG_ENV}=1 shows the traceback]"


@contextmanager
def exit_on_startup_error(module):
    try:
        yield
    except (ParamsError, ClasSystemError) as err:
        if os.environ.get(DEBUG_ENV):
            raise
        print(startup_line(module, err), file=sys.stderr, flush=True)
        sys.exit(EXIT_STARTUP_ERROR)
