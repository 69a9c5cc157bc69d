"""Compatibility with ZeMosaic: its configuration keys and config files (:mod:`.zemosaic`).

Adapters (``classic``, ``grid``, ``cli``) and ``StackConfig.from_dict`` read ZeMosaic's
settings through this package only, so each key is spelled and parsed in one place.
"""

from __future__ import annotations

__all__ = ["zemosaic"]
