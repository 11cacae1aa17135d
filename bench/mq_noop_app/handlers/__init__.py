"""Apps of the benchmark service: only ``bench``, whose ``noop`` is topic ``/bench/noop``."""
