"""The package version, in a module of its own: installers that drop `__init__.py` files keep it."""

__version__ = "0.1.0"
