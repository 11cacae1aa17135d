"""Task and flow lifecycles as python-statemachine machines: the one definition of which
transition may leave which state.

The machines are never kept in memory per task: the database row is the state. A move is
``UPDATE ... SET status=<target> WHERE id=? AND status=<source>`` (see ``store.py``), with
the target looked up here, so a duplicated or reordered notice finds the row already moved
and changes nothing (rowcount 0). Diagram (also in docs/services/xingqiao.md)::

    task:  waiting --dispatch--> pending --sent--> started
           waiting --expand--> started          (a map task: its items run, it waits)
           waiting --wait--> started            (a signal task waits for its signal)
           waiting --spawn--> started           (a sub-flow task: its child flow runs)
           pending|started|retrying --succeed--> finished
           pending|started|retrying --retry--> retrying     (attempt failed, retries left)
           waiting|pending|started|retrying --fail--> failed
           waiting --skip--> skipped                         (trigger rule cannot be met)
           started --skip--> skipped                (a signal's timeout, on_timeout skip)
           pending|started|retrying --time_out--> timed_out
           waiting|pending|started|retrying --cancel--> canceled
           finished|failed|skipped|canceled|timed_out --reset--> waiting   (retry / rerun)

    flow:  started --finish--> finished | --fail--> failed | --cancel--> canceled
           started --time_out--> timed_out
           finished|failed|canceled|timed_out --restart--> started          (retry / rerun)
"""

from __future__ import annotations

from statemachine import State, StateMachine


class IllegalMove(ValueError):
    """An event the lifecycle does not allow from a state."""


class TaskLifecycle(StateMachine):
    """A task of a flow: one topic call, retried and timed by its own policy."""

    waiting = State(initial=True)
    pending = State()
    started = State()
    retrying = State()
    finished = State()
    failed = State()
    skipped = State()
    canceled = State()
    timed_out = State()

    dispatch = waiting.to(pending)
    expand = waiting.to(started)  # a map task: its items are created, it waits for them
    wait = waiting.to(started)  # a signal task: it waits for its signal
    spawn = waiting.to(started)  # a sub-flow task: its child flow was created
    sent = pending.to(started)
    succeed = pending.to(finished) | started.to(finished) | retrying.to(finished)
    retry = pending.to(retrying) | started.to(retrying) | retrying.to(retrying)
    fail = (waiting.to(failed) | pending.to(failed) | started.to(failed)
            | retrying.to(failed))
    skip = waiting.to(skipped) | started.to(skipped)  # started: a signal's timeout
    time_out = pending.to(timed_out) | started.to(timed_out) | retrying.to(timed_out)
    cancel = (waiting.to(canceled) | pending.to(canceled) | started.to(canceled)
              | retrying.to(canceled))
    reset = (finished.to(waiting) | failed.to(waiting) | skipped.to(waiting)
             | canceled.to(waiting) | timed_out.to(waiting))


class FlowLifecycle(StateMachine):
    """A flow run ("job"): ends once no task can move any more, or on timeout / cancel."""

    started = State(initial=True)
    finished = State()
    failed = State()
    canceled = State()
    timed_out = State()

    finish = started.to(finished)
    fail = started.to(failed)
    cancel = started.to(canceled)
    time_out = started.to(timed_out)
    restart = (finished.to(started) | failed.to(started) | canceled.to(started)
               | timed_out.to(started))


def _table(machine: type[StateMachine]) -> dict[str, dict[str, str]]:
    """``{event: {source: target}}`` read from the machine's own transitions."""
    table: dict[str, dict[str, str]] = {}
    for state in machine.states:
        for transition in state.transitions:
            for event in transition.events:
                table.setdefault(str(event.id), {})[state.id] = transition.target.id
    return table


TASK_MOVES = _table(TaskLifecycle)
FLOW_MOVES = _table(FlowLifecycle)

TASK_STATES = tuple(s.id for s in TaskLifecycle.states)
FLOW_STATES = tuple(s.id for s in FlowLifecycle.states)
#: Task states a message is (or should be) out for.
TASK_ACTIVE = ("pending", "started", "retrying")
#: Task states that will not change without an operator (retry / rerun).
TASK_DONE = ("finished", "failed", "skipped", "canceled", "timed_out")
TASK_BAD = ("failed", "timed_out")
FLOW_DONE = ("finished", "failed", "canceled", "timed_out")


def target(moves: dict[str, dict[str, str]], event: str, source: str) -> str:
    """The state ``event`` leads to from ``source``; IllegalMove when it may not."""
    try:
        return moves[event][source]
    except KeyError:
        raise IllegalMove(f"{event} is not allowed from {source}") from None
