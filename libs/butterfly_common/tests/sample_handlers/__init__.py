"""Handlers exercising every rule of the wire contract, for the framework's own tests."""
