"""A service for the tracing test: an HTTP call that queues work, whose handler calls core."""

from butterfly_common.service import Service

service = Service(name="traced", port=18598, handlers="traced_app.handlers")
