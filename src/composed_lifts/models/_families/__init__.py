"""One module per registered model family, each defining ``FAMILY`` (see ``_registry.py``)."""
