"""The inspection's life cycle as a python-statemachine machine.

    pending --start--> checking --passed--> passed
                          |  ^
                     failed  retry (at most MAX_ATTEMPTS checks)
                          v  |
                         failed --give_up--> abandoned
"""

from __future__ import annotations

from statemachine import State, StateMachine

MAX_ATTEMPTS = 3


class Record:
    """What the machine reads and writes: the state kept in wuxing, plus the attempt count."""

    def __init__(self, state: str | None, attempts: int) -> None:
        self.state = state
        self.attempts = attempts


class Inspection(StateMachine):
    pending = State(initial=True)
    checking = State()
    failed = State()
    passed = State(final=True)
    abandoned = State(final=True)

    start = pending.to(checking)
    pass_ = checking.to(passed)
    fail = checking.to(failed)
    retry = failed.to(checking, cond="attempts_left")
    give_up = failed.to(abandoned)

    def attempts_left(self) -> bool:
        return self.model.attempts < MAX_ATTEMPTS

    def on_enter_checking(self) -> None:
        self.model.attempts += 1


#: The event names the HTTP API takes (``pass`` is a keyword in Python).
EVENTS = {"start": "start", "pass": "pass_", "fail": "fail", "retry": "retry",
          "give_up": "give_up"}
