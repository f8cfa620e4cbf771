"""How much memory the machine has available now (``MemAvailable``, and the cgroup's limit when
the process has one), for wrappers that refuse work before they allocate as the command line
and ``models.from_hf`` do.

>>> from composed_lifts.memory import available_bytes
>>> available = available_bytes()
>>> available is None or available > 0
True
"""

from ._memory import available_bytes as available_bytes

__all__ = ["available_bytes"]
