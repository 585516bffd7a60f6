"""Callboard: a self-hosted, Runway-compatible gateway for character-performance video."""

__version__ = "0.1.0"
