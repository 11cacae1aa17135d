"""Xingqiao's HTTP apps (one: ``/xingqiao/*``)."""
