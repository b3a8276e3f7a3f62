"""The engine's log records go through scanpy's logger, so ``scanpy.settings.verbosity`` decides what is shown.

``falcon_sc.core`` stays free of scanpy and logs with Python's :mod:`logging`; this handler passes its records
on: warnings and errors as scanpy warnings and errors (shown from verbosity 1, the default), and the stage
details (neighbour search time, restarts' objectives, the initial allocation) as hints (verbosity 3).
"""

from __future__ import annotations

import logging

from scanpy import logging as logg


class _ToScanpy(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            logg.error(message)
        elif record.levelno >= logging.WARNING:
            logg.warning(message)
        elif record.levelno >= logging.INFO:
            logg.hint(message)
        else:
            logg.debug(message)


def route_engine_logs() -> None:
    """Send ``falcon_sc.core``'s records to scanpy's logger (once), and nowhere else."""
    engine = logging.getLogger("falcon_sc.core")
    if not any(isinstance(handler, _ToScanpy) for handler in engine.handlers):
        engine.addHandler(_ToScanpy())
    engine.setLevel(logging.DEBUG)  # scanpy's verbosity filters, not this logger's level
    engine.propagate = False
