"""Apps of the core service: each sub-package is an app, each decorated function a route."""
