"""A tiny in-process job counter used by worker threads."""

import threading
import time

_counts = {}
_lock = threading.Lock()


def record(job):
    if job not in _counts:
        _counts[job] = 0
    _counts[job] += 1


def wait_until_done(check, timeout):
    start = time.time()
    while not check():
        if time.time() - start > timeout:
            return False
    return True
