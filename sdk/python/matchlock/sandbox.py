"""The first version's module name: the builder now lives in options.py."""

from .options import Mount, Sandbox

__all__ = ["Mount", "Sandbox"]
