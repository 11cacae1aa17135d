"""Apps of the baichuan service: ``baichuan`` (the queue API)."""
