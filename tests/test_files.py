"""``_files``: reads that refuse corrupted files; JSON written strict, a chunk at a time.

Each file kind is truncated at every offset and corrupted at random offsets (property tests).
"""

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from composed_lifts.cli._files import read_array, write_json_values
from composed_lifts.errors import InputFileError


def _npy(array):
    f = io.BytesIO()
    np.save(f, array)
    return f.getvalue()


GOOD = {
    ".npy": _npy(np.arange(24, dtype=np.float32).reshape(4, 6) / 7),
    ".json": json.dumps((np.arange(24).reshape(4, 6) / 7).tolist()).encode(),
}


def _read_or_refuse(path, suffix):
    """A corrupted file is read as some array or refused with InputFileError, nothing else."""
    try:
        return read_array(str(path))
    except InputFileError as err:
        assert str(path) in str(err)
        return None


@pytest.mark.parametrize("suffix", sorted(GOOD))
def test_truncated_at_every_offset(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    for cut in range(len(GOOD[suffix])):
        path.write_bytes(GOOD[suffix][:cut])
        x = _read_or_refuse(path, suffix)
        # a truncated .npy is always refused: its header gives the data's length
        assert x is None or (suffix == ".json" and isinstance(x, np.ndarray)), cut


@pytest.mark.parametrize("suffix", sorted(GOOD))
@given(at=st.data())
@settings(max_examples=100)
def test_corrupted_at_random_offsets(tmp_path_factory, suffix, at):
    raw = bytearray(GOOD[suffix])
    for _ in range(at.draw(st.integers(1, 3), label="bytes changed")):
        raw[at.draw(st.integers(0, len(raw) - 1), label="offset")] ^= at.draw(st.integers(1, 255))
    path = tmp_path_factory.mktemp("f") / f"x{suffix}"
    path.write_bytes(bytes(raw))
    x = _read_or_refuse(path, suffix)
    assert x is None or isinstance(x, np.ndarray)


@given(
    values=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=5),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    )
)
@settings(max_examples=30)
def test_json_values_are_strict_json_and_exact(values):
    f = io.StringIO()
    write_json_values(f, values)

    def refuse(token):
        raise AssertionError(f"bare {token}")

    back = json.loads(f.getvalue(), parse_constant=refuse)
    decode = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}
    got = np.vectorize(lambda v: decode.get(v, v), otypes=[np.float64])(np.array(back, object))
    np.testing.assert_array_equal(got.astype(np.float32), values)
    if np.isfinite(values).all():
        assert f.getvalue() == json.dumps(values.tolist())


def test_json_values_are_written_without_a_list_of_the_whole_array(tmp_path):
    import tracemalloc

    values = np.linspace(-1, 1, 1_000_000, dtype=np.float32)  # a list of it: > 32 MB
    with open(tmp_path / "y.json", "w") as f:
        tracemalloc.start()
        write_json_values(f, values)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 16e6, peak
    assert json.loads((tmp_path / "y.json").read_text()) == values.tolist()
