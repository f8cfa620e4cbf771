"""Writing a file atomically (a reader sees the old file or the new one, never half of one,
and its permissions are kept), and checking before any work that a path can be written.

>>> import os, pathlib, tempfile
>>> from composed_lifts.files import atomic_writer
>>> path = os.path.join(tempfile.mkdtemp(), "out.txt")
>>> with atomic_writer(path, "w") as f:
...     _ = f.write("done")
>>> pathlib.Path(path).read_text()
'done'
"""

from ._atomic import atomic_writer as atomic_writer
from ._atomic import check_writable as check_writable
from ._atomic import file_kind as file_kind

__all__ = ["atomic_writer", "check_writable", "file_kind"]
