"""Compatibility with ZeMosaic: its config keys and files, and how their values are read.

Keys, the config-file loader and the allow-list of ignored keys are in :mod:`.zemosaic`;
the readers of booleans, numbers, pairs and method names in :mod:`.values`.

Adapters (``classic``, ``grid``, ``cli``) and ``StackConfig.from_dict`` read ZeMosaic's
settings through this package only, so each key is spelled and parsed in one place.
"""

from __future__ import annotations

__all__ = ["zemosaic", "values"]
