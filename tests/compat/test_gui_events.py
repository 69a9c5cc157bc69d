"""ZeMosaic's callback levels: warnings must arrive as "WARN" (its GUI drops "WARNING")."""

from __future__ import annotations

import logging

import pytest

from zemosaic_xp.compat.gui_events import FORWARDED_LEVELS, callback_level


@pytest.mark.parametrize(("level", "expected"), [
    (logging.DEBUG, "DEBUG"), (logging.INFO, "INFO"), (logging.WARNING, "WARN"), (logging.ERROR, "ERROR"),
    (logging.CRITICAL, "ERROR"), (logging.INFO + 5, "INFO"), (5, "DEBUG"),
])
def test_callback_level(level, expected):
    assert callback_level(level) == expected


def test_every_user_facing_level_is_forwarded_by_zemosaic():
    for level in (logging.INFO, logging.WARNING, logging.ERROR):
        assert callback_level(level) in FORWARDED_LEVELS
