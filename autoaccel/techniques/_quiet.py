"""Keep the search's own output readable while chatty library code runs."""

from __future__ import annotations

import contextlib
import io
import logging


@contextlib.contextmanager
def quiet():
    """ORT's quantizer and transformer optimizer print progress and advice to stdout and
    the logging system; silence both for the duration."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # its C++ warnings bypass Python logging
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)
