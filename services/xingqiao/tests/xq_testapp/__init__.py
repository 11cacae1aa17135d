"""A tiny service whose handlers fail, sleep and count their runs: the tasks of the
xingqiao tests (``butterfly serve xq_testapp:service`` with this folder on PYTHONPATH)."""

from butterfly_common.service import Service

service = Service(name="xqtest", port=4799, handlers="xq_testapp.handlers")
