"""Handlers the stub broker's tests run on the stub and on a real consumer alike."""
