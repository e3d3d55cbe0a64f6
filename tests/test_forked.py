"""Start-up model work in a forked child: its result or exception comes back, and the child
always exits, whatever it hands back, so it never runs on in the parent's code."""
import os
import signal
import threading

import pytest

from clas_system.errors import ChildFailed
from clas_system.runtime.forked import run_in_child


class Unpicklable(Exception):
    def __init__(self):
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def unpicklable_error():
    raise Unpicklable()


def test_the_result_and_the_exception_come_back():
    assert run_in_child(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ValueError, match="from the child"):
        run_in_child(lambda: (_ for _ in ()).throw(ValueError("from the child")))


def test_an_unpicklable_result_fails_in_the_parent_and_the_child_exits():
    parent = os.getpid()
    with pytest.raises(ChildFailed, match=r"its result \(lock\) cannot be sent back"):
        run_in_child(threading.Lock)
    assert os.getpid() == parent  # were the child to return, it would be here with its own pid


def test_an_unpicklable_exception_still_gets_its_text_across():
    parent = os.getpid()
    with pytest.raises(ChildFailed, match="Unpicklable: holds a lock"):
        run_in_child(unpicklable_error)
    assert os.getpid() == parent


def test_a_child_that_dies_is_reported():
    with pytest.raises(ChildFailed, match="died"):
        run_in_child(lambda: os.kill(os.getpid(), signal.SIGKILL))
