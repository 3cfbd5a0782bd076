"""The operators' window: the read side's service layer, the admin API (``/api/v1``),
the web console (``/console/``), and the ``hub`` commands that use the same service."""
