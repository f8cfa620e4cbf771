"""The command line's compilation cache: a folder of the user's own, entries verified before use."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from composed_lifts.cli import _cache
from hostile import hostile

ARGS = [
    "run",
    "--seed",
    "2",
    "--layers",
    "2",
    "--batch",
    "3",
    "--features",
    "4",
    "--format",
    "json",
]


def cli(cache, *args):
    env = {**os.environ, "COMPOSED_LIFTS_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "composed_lifts", *args], capture_output=True, text=True, env=env
    )


@pytest.mark.parametrize("mode, owner", [(0o777, None), (0o720, None), (0o700, 12345)])
def test_a_folder_others_may_write_or_own_is_refused(capsys, tmp_path, monkeypatch, mode, owner):
    folder = tmp_path / "cache"
    folder.mkdir()
    os.chmod(folder, mode)
    if owner is not None:
        if os.getuid() != 0:
            pytest.skip("changing a folder's owner needs root")
        os.chown(folder, owner, owner)
    monkeypatch.setenv("COMPOSED_LIFTS_CACHE", str(folder))
    line, out = hostile(capsys, "run", words=["the compilation cache folder", "is refused", "off"])
    assert out == "" and os.listdir(folder) == []


def test_tilde_is_expanded_and_the_folder_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COMPOSED_LIFTS_CACHE", "~/jaxcache")
    monkeypatch.chdir(tmp_path)
    folder = _cache.cache_folder()
    assert folder == tmp_path / "home" / "jaxcache"
    assert _cache.open_cache(folder) == set()
    assert os.stat(folder).st_mode & 0o777 == 0o700 and not (tmp_path / "~").exists()


def test_entries_without_a_matching_hash_are_removed(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir(mode=0o700)
    (folder / "good-cache").write_bytes(b"program")
    _cache.seal_cache(folder, set())
    (folder / "truncated-cache").write_bytes(b"prog")
    (folder / "truncated-sha256").write_text((folder / "good-sha256").read_text())
    (folder / "unsealed-cache").write_bytes(b"program")
    (folder / "evicted-sha256").write_text("0" * 64)
    assert _cache.open_cache(folder) == {"good-cache"}
    assert sorted(os.listdir(folder)) == ["good-cache", "good-sha256"]


TAMPER = textwrap.dedent(
    """
    import functools, sys
    import jax, jax.numpy as jnp
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    @functools.partial(jax.jit, static_argnames=("num_layers", "features"), keep_unused=True)
    def _apply_params(variables, x_batch, *, num_layers, features):  # same signature, wrong answer
        return (x_batch * 0.0 + 42.0).reshape(-1)

    params = {"params": {"Dense_0": {"bias": jnp.zeros((2, 4)), "kernel": jnp.zeros((2, 4, 4))}}}
    _apply_params(params, jnp.zeros((3, 4)), num_layers=2, features=4)
    """
)


def test_a_tampered_or_truncated_entry_is_never_loaded(tmp_path):
    cache, other = tmp_path / "cache", tmp_path / "other"
    first = cli(cache, *ARGS)
    assert first.returncode == 0, first.stderr
    want = json.loads(first.stdout)["result"]
    subprocess.run([sys.executable, "-c", TAMPER, str(other)], check=True)
    (fake,) = [p for p in os.listdir(other) if p.startswith("jit__apply_params-")]
    (entry,) = [
        p for p in os.listdir(cache) if p.startswith("jit__apply_params-") and p.endswith("-cache")
    ]
    shutil.copyfile(other / fake, cache / entry)  # another program under this key
    second = cli(cache, *ARGS)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["result"] == want
    # the entry was replaced by a fresh compile and sealed again; a truncated one likewise
    assert (cache / entry).read_bytes() != (other / fake).read_bytes()
    data = (cache / entry).read_bytes()
    (cache / entry).write_bytes(data[: len(data) // 2])
    third = cli(cache, *ARGS)
    assert third.returncode == 0 and third.stderr == "", third.stderr
    assert json.loads(third.stdout)["result"] == want
    assert entry in _cache.open_cache(cache)  # rewritten whole and sealed
    assert os.stat(cache).st_mode & 0o777 == 0o700
