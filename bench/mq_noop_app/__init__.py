"""No-op jobs for bench/mq_throughput.py, one flavour per queue system.

Every system runs the same empty job so the benchmark measures the queue machinery
(claim, run, record, log) and nothing else. Nothing here counts completions: each system's
own bookkeeping says when a message is done (baichuan's ``finished`` set, RQ's finished
registry or burst exit, Dramatiq's message hash emptied by acks), so no system pays for an
extra Redis call the others do not make.

``service`` is the baichuan side: ``butterfly worker mq_noop_app:service`` loads it without
installing anything, serving the single topic ``/bench/noop``.
"""

from butterfly_common.service import Service

service = Service(
    name="mq_bench",
    port=4399,
    handlers="mq_noop_app.handlers",
    description="no-op handler for bench/mq_throughput.py",
)
