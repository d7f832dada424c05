"""RQ entry points: thin shells that call the services."""
