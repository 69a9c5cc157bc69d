"""Package version (single source, read by pyproject and FITS provenance keys)."""

__version__ = "0.1.0"
