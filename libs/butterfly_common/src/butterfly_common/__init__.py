"""Butterfly: a plain Python function becomes an HTTP API and a queue topic."""

__version__ = "2.0.0"
