"""The RQ peer's job: imported by ``rq worker`` (through PYTHONPATH) by its dotted name."""


def noop() -> None:
    """Do nothing, as the baichuan handler does."""
