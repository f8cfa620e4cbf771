"""The command line's persistent compilation cache, verified.

JAX loads whatever executable sits in its cache folder under the key it
computes (``<key>-cache`` files, ``jax/_src/lru_cache.py``), with no integrity
check, and a truncated entry makes it warn and recompile on every run without
replacing the entry. So around each command:

- :func:`open_cache` expands ``~``, creates the folder with mode 0700 or refuses
  one that another user owns or that group or others may write (as ssh does
  with its keys), then checks every entry against the SHA-256 stored beside it
  (``<key>-sha256``): an entry whose hash is missing or differs is deleted
  before JAX can load it, so JAX compiles afresh and writes a new one;
- :func:`seal_cache` hashes the entries written during the command.

What the cache trusts: the user account that owns the folder. A program
running as that user can rewrite an entry and its hash together; nobody else
can write to the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

from ._errors import CacheFolderError
from ._files import atomic_writer

__all__ = ["CACHE_ENV", "cache_folder", "open_cache", "seal_cache"]

CACHE_ENV = "COMPOSED_LIFTS_CACHE"
_ENTRY = "-cache"
_HASH = "-sha256"
_OFF = ("", "off", "0", "none")


def cache_folder() -> Path | None:
    """``$COMPOSED_LIFTS_CACHE`` (``~`` expanded), else ``~/.cache/composed-lifts/jax``; ``None`` if off."""
    folder = os.environ.get(CACHE_ENV)
    if folder is None:
        return Path.home() / ".cache" / "composed-lifts" / "jax"
    if folder.strip().lower() in _OFF:
        return None
    return Path(os.path.expanduser(folder))


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_owned(folder: Path) -> None:
    try:
        st = os.stat(folder)
    except OSError as err:
        raise CacheFolderError(str(folder), f"cannot be used: {err.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise CacheFolderError(
            str(folder), "is not a folder", f"set {CACHE_ENV} to a folder or to off"
        )
    if st.st_uid != os.getuid():
        raise CacheFolderError(
            str(folder),
            f"is refused: it belongs to user id {st.st_uid}, not to you ({os.getuid()}), and a "
            f"cache entry is a program that runs",
            f"set {CACHE_ENV} to a folder of your own or to off",
        )
    if st.st_mode & 0o022:
        raise CacheFolderError(
            str(folder),
            f"is refused: group or others may write to it (mode {stat.filemode(st.st_mode)}), "
            f"and a cache entry is a program that runs",
            f"chmod 700 {str(folder)!r}, or set {CACHE_ENV} to another folder or to off",
        )


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(_ENTRY) and p.is_file())


def open_cache(folder: Path) -> set[str]:
    """Create or check ``folder``, delete unverified entries; return the names of the others."""
    if not folder.exists():
        try:
            folder.mkdir(mode=0o700, parents=True)
        except OSError as err:
            raise CacheFolderError(str(folder), f"cannot be created: {err.strerror}") from None
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
    _check_owned(folder)
    verified = set()
    for entry in _entries(folder):
        sidecar = entry.with_name(entry.name[: -len(_ENTRY)] + _HASH)
        try:
            good = sidecar.read_text().strip() == _digest(entry)
        except (OSError, UnicodeDecodeError):
            good = False
        if good:
            verified.add(entry.name)
            continue
        for path in (entry, sidecar, entry.with_name(entry.name[: -len(_ENTRY)] + "-atime")):
            with contextlib.suppress(OSError):
                path.unlink()
    for sidecar in folder.glob(f"*{_HASH}"):  # hashes of entries JAX evicted
        if sidecar.name[: -len(_HASH)] + _ENTRY not in verified:
            with contextlib.suppress(OSError):
                sidecar.unlink()
    return verified


def seal_cache(folder: Path, verified: set[str]) -> None:
    """Store the hash of each entry written since :func:`open_cache`."""
    with contextlib.suppress(OSError):
        for entry in _entries(folder):
            if entry.name in verified:
                continue
            with atomic_writer(entry.with_name(entry.name[: -len(_ENTRY)] + _HASH), "w") as f:
                f.write(_digest(entry) + "\n")


def enable(folder: Path) -> None:
    """Point JAX's persistent compilation cache at ``folder`` for every program."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
