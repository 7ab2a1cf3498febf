"""Learned generators (torch, imported lazily) and their registry (:mod:`telcosim.models.base`).

Importing the package imports its model modules, so every generator they define is registered."""

from . import behaviour, sequences, shapes

__all__ = ["behaviour", "sequences", "shapes"]
