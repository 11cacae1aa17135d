"""Handlers for the one-shard-down test: eight topics ``/sd/alpha`` .. ``/sd/theta`` that
take a moment (no Redis of their own: the dead shard must not be theirs to need)."""
