"""The core service: demo apps and the user's own handlers, served on port 8585.

Add an app by creating a package under ``butterfly_core/handlers/`` (copy ``demo_api``);
every ``@api`` function in it becomes ``/<app>/<function>``.
"""

from butterfly_common.service import Service

from .loglevels import start_sync

service = Service(
    name="core",
    port=8585,
    handlers="butterfly_core.handlers",
    description="the user's app server: demo apps and your own handlers",
    starters=[start_sync],  # /demo_log/loglevel_set reaches every worker
)
