"""Ruqi's HTTP apps: ``ruqi`` (``/ruqi/<handler>``)."""
