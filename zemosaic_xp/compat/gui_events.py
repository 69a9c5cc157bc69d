"""ZeMosaic's ``progress_callback`` levels, as its GUI filters them.

ZeMosaic's worker forwards a callback to the Qt GUI only for the levels ``INFO``,
``WARN``, ``ERROR``, ``SUCCESS``, ``ETA_LEVEL`` and ``CHRONO_LEVEL``
(``reference/upstream_spec.md`` §7): Python's ``"WARNING"`` would be dropped.
:func:`callback_level` is the one translation from :mod:`logging` levels.
"""

from __future__ import annotations

import logging

__all__ = ["callback_level", "FORWARDED_LEVELS"]

#: The levels ZeMosaic's queue proxy forwards to the GUI.
FORWARDED_LEVELS = ("INFO", "WARN", "ERROR", "SUCCESS", "ETA_LEVEL", "CHRONO_LEVEL")

_BY_LOGGING_LEVEL = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN",
                     logging.ERROR: "ERROR", logging.CRITICAL: "ERROR"}


def callback_level(level: int) -> str:
    """The ``level`` argument of ZeMosaic's callback for a :mod:`logging` level.

    Parameters
    ----------
    level : int
        A :mod:`logging` level (``logging.WARNING`` ...).

    Returns
    -------
    str
        ``"WARN"`` for warnings, ``"ERROR"`` for errors and above, ``"INFO"``,
        ``"DEBUG"``; levels in between take the next lower named one.
    """
    for threshold in sorted(_BY_LOGGING_LEVEL, reverse=True):
        if level >= threshold:
            return _BY_LOGGING_LEVEL[threshold]
    return "DEBUG"
