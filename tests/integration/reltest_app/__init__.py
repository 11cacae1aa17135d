"""A service for the queue reliability test: counts every handler run in Redis."""

from butterfly_common.service import Service

service = Service(name="reltest", port=18599, handlers="reltest_app.handlers")
