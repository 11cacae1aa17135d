"""Apps of the reliability test service."""
