"""The ``goldenpath`` command."""

from goldenpath.cli._main import main

__all__ = ["main"]
