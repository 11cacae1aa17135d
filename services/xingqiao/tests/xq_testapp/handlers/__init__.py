"""Handlers of the test service."""
