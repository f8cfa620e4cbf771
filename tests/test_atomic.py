"""``_atomic``: writes that lose nothing, keep permissions, follow links, survive signals.

Signals arrive at random moments during a write, in a child process that imports
``_atomic`` alone (not JAX).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composed_lifts._atomic import atomic_writer
from composed_lifts.cli._files import write_array
from composed_lifts.errors import OutputFileError, ReadOnlyFileError

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "src", "composed_lifts")


def test_write_keeps_permissions_and_refuses_read_only(tmp_path):
    path = tmp_path / "y.json"
    write_array(str(path), np.arange(3.0))
    os.chmod(path, 0o600)
    write_array(str(path), np.arange(4.0))
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == [0.0, 1.0, 2.0, 3.0]
    os.chmod(path, 0o444)
    before = path.read_bytes()
    with pytest.raises(ReadOnlyFileError, match="read-only"):
        write_array(str(path), np.arange(5.0))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["y.json"]


def test_new_file_gets_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        write_array(str(tmp_path / "y.npy"), np.arange(2.0))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "y.npy").st_mode & 0o777 == 0o640


def test_a_symbolic_link_is_written_through(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "y.npy"
    np.save(target, np.zeros(2))
    link = tmp_path / "y.npy"
    os.symlink(target, link)
    write_array(str(link), np.ones(3))
    assert os.path.islink(link) and os.readlink(link) == str(target)
    np.testing.assert_array_equal(np.load(target), np.ones(3))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "y.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(path) as f:
            f.write(b"new, half")
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["y.bin"]


def test_a_name_that_fits_gets_a_temporary_name_that_fits(tmp_path):
    path = tmp_path / ("y" * 250 + ".npy")
    write_array(str(path), np.arange(2.0))
    assert os.listdir(tmp_path) == [path.name]


def test_a_missing_folder_is_an_output_error(tmp_path):
    with pytest.raises(OutputFileError, match="does not exist"):
        with atomic_writer(tmp_path / "no" / "y.bin") as f:
            f.write(b"x")


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".y.bin.{dead_pid}.abc123_x.tmp"
    live = tmp_path / f".y.bin.{os.getppid()}.def456.tmp"
    other = tmp_path / f".z.bin.{dead_pid}.abc.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"half")
    with atomic_writer(tmp_path / "y.bin") as f:
        f.write(b"new")
    assert sorted(os.listdir(tmp_path)) == sorted(["y.bin", live.name, other.name])


CHILD = textwrap.dedent(
    """
    import sys, time, types
    pkg = types.ModuleType("composed_lifts")
    pkg.__path__ = [sys.argv[1]]
    sys.modules["composed_lifts"] = pkg  # _atomic alone, without importing JAX
    from composed_lifts._atomic import atomic_writer
    try:
        with atomic_writer(sys.argv[2]) as f:
            print("writing", flush=True)
            for _ in range(40):
                f.write(b"n" * 4096)
                time.sleep(0.005)
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


@given(
    sig=st.sampled_from(["SIGTERM", "SIGINT", "SIGHUP", "SIGKILL"]),
    delay=st.floats(0.0, 0.3),
)
@settings(max_examples=8)
def test_signals_at_random_moments_lose_nothing(tmp_path_factory, sig, delay):
    folder = tmp_path_factory.mktemp("sig")
    path = folder / "y.bin"
    path.write_bytes(b"old")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, os.path.abspath(PACKAGE), str(path)], stdout=subprocess.PIPE
    )
    assert child.stdout.readline() == b"writing\n"
    time.sleep(delay)
    child.send_signal(getattr(signal, sig))
    child.wait(timeout=20)
    child.stdout.close()
    # the old file or the whole new one (the signal may land after the rename), never half
    assert path.read_bytes() in (b"old", b"n" * 4096 * 40)
    assert child.returncode in (0, -getattr(signal, sig), 130)
    left = sorted(set(os.listdir(folder)) - {"y.bin"})
    if sig == "SIGKILL" and child.returncode != 0:
        assert len(left) <= 1  # cannot be caught: the next write removes it
        with atomic_writer(path) as f:
            f.write(b"next")
        assert os.listdir(folder) == ["y.bin"] and path.read_bytes() == b"next"
    else:
        assert left == []
