"""The checks every public function applies to its arguments, for wrappers that want the same.

Each raises a class of :mod:`composed_lifts.errors` naming the argument (or the flag, as the
command line passes it) as given in ``name``:

>>> from composed_lifts.arguments import check_integer
>>> check_integer("--layers", -1, minimum=0)
Traceback (most recent call last):
...
composed_lifts.errors.ArgumentRangeError: --layers must be >= 0, got -1
"""

from ._arguments import as_float32_matrix as as_float32_matrix
from ._arguments import check_integer as check_integer
from ._arguments import check_seed as check_seed

__all__ = ["as_float32_matrix", "check_integer", "check_seed"]
