"""Keras, imported once, without TensorFlow's two C++ start-up notices.

Importing TensorFlow 2.21 prints, on file descriptor 2::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. You may see slightly ...

They come from a static initialiser that runs before absl's logging is set up, so
``TF_CPP_MIN_LOG_LEVEL``, ``GLOG_minloglevel`` and ``ABSL_MIN_LOG_LEVEL`` cannot silence
them. They come twice because two shared libraries carry their own copy of that code:
``libtensorflow_framework.so.2``, and the profiler plugin (``_pywrap_profiler_plugin.so``)
that the public API loads later. ``TF_ENABLE_ONEDNN_OPTS=0`` would remove them by turning
oneDNN off, which changes the numbers; instead fd 2 goes to a file during the import and
everything written there is passed on to the real fd 2 except exactly these two lines.

Every module of the package that needs Keras imports it from here
(``from fraudstream.models.backend import keras``), so whichever comes first is quiet.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator

#: The only lines dropped: their exact shapes, so that anything else (a real error) shows.
NOTICES = (
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\r?\n?$"),
    re.compile(rb"^I\d{4} \d\d:\d\d:[\d.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\. "),
)


def is_notice(line: bytes) -> bool:
    """True for one of TensorFlow's start-up notices (a line of fd 2, as bytes).

    >>> is_notice(b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
    True
    >>> is_notice(b"E0000 00:00:1.2 42 port.cc:153] oneDNN custom operations are on. (an error)\\n")
    False
    """
    return any(p.match(line) for p in NOTICES)


@contextlib.contextmanager
def fd2_without(drop: Callable[[bytes], bool] = is_notice) -> Iterator[None]:
    """Inside the block, fd 2 goes to a temporary file; on leaving (also by an exception)
    every line written there is passed on to the real fd 2 except those ``drop`` matches.
    A file, not a pipe: what the block writes is not limited by a pipe's buffer."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to print to, nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = b"".join(line for line in capture if not drop(line))
            while kept:
                kept = kept[os.write(2, kept):]


def _import_keras():
    if "keras" in sys.modules:
        return sys.modules["keras"]
    with fd2_without(is_notice):
        import keras
    return keras


keras = _import_keras()

__all__ = ["NOTICES", "fd2_without", "is_notice", "keras"]
