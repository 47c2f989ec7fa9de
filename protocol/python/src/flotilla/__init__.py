"""flotilla's Python client: dstack's Python API (``flotilla.api``) served by the flotilla daemon."""

__version__ = "0.1.0"
