"""safetensors files, written streamed with a checksum per tensor (per layer of a stacked
tensor) in the metadata, and read tensor by tensor straight into their destination.

The format (8-byte little-endian header length, a JSON header, then the data in C order)
is written by hand because ``safetensors.numpy.save_file`` needs every tensor in one dict
(per-layer tensors would be copies: the model twice) and renames a 0600 file into place.
Reading checks the file with the library's ``safe_open`` first, then reads bytes with
``os.preadv`` into the preallocated result: ``safe_open`` memory-maps the file, and each
mapped page it copies from stays in the process's resident memory (measured: 2x the
params at peak), which reading into place avoids.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import struct
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import xxhash

from .._atomic import atomic_writer
from .._keymap import assign
from ..errors import ArgumentTypeError, CheckpointFormatError, ChecksumMismatchError
from ._record import CHECKSUMS_KEY

__all__ = ["DiskTensor", "SafetensorsFile", "open_regular", "write_safetensors"]

_CODES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}
_DTYPES = {code: name for name, code in _CODES.items()}
_PLACEHOLDER = "0" * 16


def np_dtype(name: str) -> np.dtype:
    import ml_dtypes

    return np.dtype(getattr(ml_dtypes, name, name))


def open_regular(path: str, what: str) -> int:
    """A read-only descriptor of ``path``, opened without blocking and only if it is a regular
    file: a FIFO, socket or device would hang or stream forever, so it is refused first."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise CheckpointFormatError(f"{what} {path!r}", "does not exist") from None
    except IsADirectoryError:
        raise CheckpointFormatError(f"{what} {path!r}", "is a folder, not a file") from None
    except OSError as err:
        raise CheckpointFormatError(
            f"{what} {path!r}", f"cannot be opened: {err.strerror}"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CheckpointFormatError(f"{what} {path!r}", "is not a regular file")
    return fd


def _hex(data) -> str:
    return xxhash.xxh3_64_hexdigest(data)


def _bytes(x: np.ndarray) -> memoryview:
    return np.ascontiguousarray(x).reshape(-1).view(np.uint8).data


@dataclasses.dataclass
class DiskTensor:
    """One tensor of a file: its bytes come from ``produce()`` as contiguous arrays in C
    order. With ``layer_axis`` set, each layer's slice gets its own checksum; at axis 0
    the chunks may split anywhere, at a later axis ``produce`` yields the whole tensor."""

    key: str
    shape: tuple
    dtype: np.dtype
    layer_axis: int | None
    produce: Callable[[], Iterator[np.ndarray]]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _header(tensors: list[DiskTensor], metadata: dict, checksums: dict) -> bytes:
    header: dict = {"__metadata__": dict(metadata, **{CHECKSUMS_KEY: json.dumps(checksums)})}
    offset = 0
    for t in tensors:
        if t.dtype.name not in _CODES:
            raise ArgumentTypeError(
                f"tensor {t.key!r}",
                f"of a dtype safetensors stores ({', '.join(sorted(_CODES))})",
                f"dtype {t.dtype}",
                "cast it first",
            )
        header[t.key] = {
            "dtype": _CODES[t.dtype.name],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + t.nbytes],
        }
        offset += t.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    return text + b" " * (-len(text) % 8)


def _unit_hashes(t: DiskTensor, chunks: Iterable[np.ndarray], write) -> list[str]:
    """Write ``t``'s chunks; return its unit checksums. Hashing inline, chunk by chunk, was
    measured faster than in a worker thread beside the writes (2 cores, 1 GB)."""
    if t.layer_axis not in (None, 0):
        (whole,) = list(chunks)
        index = (slice(None),) * t.layer_axis
        write(_bytes(whole))
        return [_hex(_bytes(whole[index + (i,)])) for i in range(t.shape[t.layer_axis])]
    units = 1 if t.layer_axis is None else t.shape[0]
    unit = t.nbytes // units if units else 0
    hashes: list[str] = []
    h, filled = xxhash.xxh3_64(), 0
    for chunk in chunks:
        data = _bytes(chunk)
        if filled == 0 and unit and len(data) % unit == 0:  # whole units
            hashes += [_hex(data[k : k + unit]) for k in range(0, len(data), unit)]
            write(data)
            continue
        write(data)
        while len(data):
            take = min(unit - filled, len(data)) if unit else len(data)
            h.update(data[:take])
            data, filled = data[take:], filled + take
            if filled == unit:
                hashes.append(h.hexdigest())
                h, filled = xxhash.xxh3_64(), 0
    while len(hashes) < units:  # empty units
        hashes.append(xxhash.xxh3_64().hexdigest())
    return hashes


def write_safetensors(
    path, tensors: list[DiskTensor], metadata: dict[str, str], progress=None
) -> None:
    """Write ``tensors`` to ``path`` atomically, one chunk at a time, checksums in the header."""
    placeholder = {
        t.key: _PLACEHOLDER
        if t.layer_axis is None
        else {"axis": t.layer_axis, "layers": [_PLACEHOLDER] * t.shape[t.layer_axis]}
        for t in tensors
    }
    head = _header(tensors, metadata, placeholder)
    with atomic_writer(path, "r+b", flag="checkpoint") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        checksums = {}
        for t in tensors:
            written = [0]

            def write(data, written=written):
                f.write(data)
                written[0] += len(data)

            hashes = _unit_hashes(t, t.produce(), write)
            checksums[t.key] = (
                hashes[0] if t.layer_axis is None else {"axis": t.layer_axis, "layers": hashes}
            )
            if written[0] != t.nbytes:  # our own producers' contract
                raise RuntimeError(
                    f"tensor {t.key!r}: wrote {written[0]} bytes, expected {t.nbytes}"
                )
            if progress is not None:
                progress(t.nbytes)
        final = _header(tensors, metadata, checksums)
        if len(final) != len(head):
            raise RuntimeError("checksum header changed length")  # fixed-width hex: cannot happen
        f.seek(8)
        f.write(final)


class SafetensorsFile:
    """A safetensors file opened for checked reads of whole tensors, of one layer, or of a
    slice (the bytes of that slice alone); ``bytes_read`` counts the data bytes read.

    Opened without blocking, and only if it is a regular file (a FIFO or a device is refused
    before anything waits on it); every tensor's dtype must be one we read (others, such as
    ``C64`` or ``F8_E8M0``, are refused by name) and its bytes must lie inside the file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self.bytes_read = 0
        self._fd = open_regular(self.path, "checkpoint")
        try:
            self._open()
        except BaseException:
            os.close(self._fd)
            raise

    def _open(self) -> None:
        from safetensors import safe_open

        try:
            with safe_open(self.path, framework="np") as f:
                self.metadata = dict(f.metadata() or {})
        except Exception as err:  # the library raises SafetensorError, OSError, ...
            raise CheckpointFormatError(
                f"checkpoint {self.path!r}",
                f"is not a safetensors file, or is truncated or corrupted: "
                f"{str(err).splitlines()[0] if str(err) else type(err).__name__}",
            ) from None
        size = os.fstat(self._fd).st_size
        head = os.pread(self._fd, 8, 0)
        (n,) = struct.unpack("<Q", head) if len(head) == 8 else (size,)
        if n > size - 8:  # the library checked it too; a file replaced meanwhile is refused
            raise CheckpointFormatError(f"checkpoint {self.path!r}", "is truncated")
        header = json.loads(os.pread(self._fd, n, 8))
        self._start = 8 + n
        header.pop("__metadata__", None)
        self.tensors = {}
        for key, v in header.items():
            code = v["dtype"]
            if code not in _DTYPES:
                raise CheckpointFormatError(
                    f"checkpoint {self.path!r}",
                    f"stores tensor {key!r} as {code}, a dtype composed-lifts does not read "
                    f"(it reads {', '.join(sorted(_DTYPES))})",
                    "convert that tensor with the tool that wrote it",
                )
            dtype, shape = np_dtype(_DTYPES[code]), tuple(int(d) for d in v["shape"])
            begin, end = (int(x) for x in v["data_offsets"])
            if end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize or (
                self._start + end > size
            ):
                raise CheckpointFormatError(
                    f"checkpoint {self.path!r}",
                    f"has tensor {key!r} whose bytes do not fit its shape or the file",
                )
            self.tensors[key] = (dtype, shape, begin)
        try:
            self.checksums = json.loads(self.metadata.get(CHECKSUMS_KEY, "{}"))
        except ValueError:
            self.checksums = None
        if not isinstance(self.checksums, dict):
            raise CheckpointFormatError(
                f"checkpoint {self.path!r}", "has a damaged checksum record in its metadata"
            )

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def spec(self, key: str, layer_axis: int | None = None) -> tuple[tuple, np.dtype]:
        dtype, shape, _ = self.tensors[key]
        if layer_axis is None:
            return shape, dtype
        return shape[:layer_axis] + shape[layer_axis + 1 :], dtype

    def _pread(self, buf: memoryview, offset: int) -> None:
        while len(buf):
            got = os.preadv(self._fd, [buf], offset)
            if got <= 0:
                raise CheckpointFormatError(f"checkpoint {self.path!r}", "is truncated")
            self.bytes_read += got
            buf, offset = buf[got:], offset + got

    def read_into(
        self, key: str, dest: np.ndarray, layer: int | None = None, axis: int = 0
    ) -> None:
        """Fill C-contiguous ``dest`` with tensor ``key`` (or its layer ``layer`` along
        ``axis``) and verify that unit's checksum when the file records one."""
        dtype, shape, begin = self.tensors[key]
        flat = dest.reshape(-1).view(np.uint8)
        if layer is None:
            record = self.checksums.get(key)
            if isinstance(record, dict):  # a stacked tensor read whole: layer by layer
                rec_axis = int(record.get("axis", 0))
                for i in range(shape[rec_axis]):
                    if rec_axis == 0:
                        self.read_into(key, dest[i], i, 0)
                    else:
                        index = (slice(None),) * rec_axis + (i,)
                        dest[index] = self.read(key, i, rec_axis)
                return
            self._pread(flat.data, self._start + begin)
            self._verify(key, None, flat)
            return
        lead = int(np.prod(shape[:axis], dtype=np.int64))
        run = int(np.prod(shape[axis + 1 :], dtype=np.int64)) * dtype.itemsize
        runs = flat.reshape(lead, run) if lead else flat
        for j in range(lead):
            self._pread(runs[j].data, self._start + begin + (j * shape[axis] + layer) * run)
        self._verify(key, layer, flat)

    def read_stacked_into(
        self, key: str, dest: np.ndarray, dest_axis: int, disk_axis: int | None = None
    ) -> None:
        """Fill ``dest`` (the whole stacked leaf, layer axis ``dest_axis``) from stacked tensor
        ``key`` whose layer axis k > 0: contiguous blocks of rows along axis 0 are read and
        scattered (no small reads), each layer's checksum streamed in C order."""
        dtype, shape, begin = self.tensors[key]
        record = self.checksums.get(key)
        axis = int(record["axis"]) if isinstance(record, dict) else None
        if not self.checksums and disk_axis:  # a plain file: nothing recorded to verify
            axis, record = disk_axis, None
        if axis is None or axis == 0:
            raise CheckpointFormatError(
                f"checkpoint {self.path!r}",
                f"has no per-layer checksums of tensor {key!r} at an axis > 0",
            )
        view = np.moveaxis(dest, dest_axis, axis)  # the disk tensor's shape, into dest
        hashers = [xxhash.xxh3_64() for _ in range(shape[axis])]
        row = int(np.prod(shape[1:], dtype=np.int64))
        block = max(1, (32 << 20) // max(1, row * dtype.itemsize))
        tmp = np.empty((block,) + shape[1:], dtype)
        pick = (slice(None),) * (axis - 1)
        for j0 in range(0, shape[0], block):
            part = tmp[: min(block, shape[0] - j0)]
            offset = self._start + begin + j0 * row * dtype.itemsize
            self._pread(part.reshape(-1).view(np.uint8).data, offset)
            view[j0 : j0 + len(part)] = part
            for sub in part if record is not None else ():
                for i, h in enumerate(hashers):
                    h.update(_bytes(sub[pick + (i,)]))
        if record is None:
            return
        want = record.get("layers", [])
        for i, h in enumerate(hashers):
            if i >= len(want) or h.hexdigest() != want[i]:
                got = h.hexdigest()
                raise ChecksumMismatchError(
                    self.path, f"{key}[layer {i}]", want[i] if i < len(want) else "none", got
                )

    def read_blocks_into(self, key: str, dest: np.ndarray, block_bytes: int = 16 << 20) -> None:
        """Fill ``dest`` (the tensor's shape, any strides, any dtype: a transposed view of a
        layer of the result, say) through one reused buffer of rows along axis 0, so that
        no copy of the whole tensor is made; the tensor's checksum is streamed."""
        dtype, shape, begin = self.tensors[key]
        want = self.checksums.get(key)
        if isinstance(want, dict) or not shape:  # per-layer checksums: read it whole
            assign(dest, self.read(key).astype(dest.dtype, copy=False))
            return
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        rows = max(1, block_bytes // max(1, row))
        tmp = np.empty((min(rows, shape[0]),) + tuple(shape[1:]), dtype)
        h = xxhash.xxh3_64()
        for r0 in range(0, shape[0], rows):
            part = tmp[: min(rows, shape[0] - r0)]
            data = part.reshape(-1).view(np.uint8)
            self._pread(data.data, self._start + begin + r0 * row)
            if want is not None:
                h.update(data.data)
            assign(dest[r0 : r0 + len(part)], part.astype(dest.dtype, copy=False))
        if want is None:
            if self.checksums:
                raise CheckpointFormatError(
                    f"checkpoint {self.path!r}",
                    f"records checksums but none for tensor {key!r}: its metadata was damaged",
                )
            return
        if h.hexdigest() != want:
            raise ChecksumMismatchError(self.path, key, want, h.hexdigest())

    def read_slice(self, key: str, index: tuple[slice, ...]) -> np.ndarray:
        """The part ``tensor[index]`` (one ``slice(start, stop)`` per leading axis, step 1),
        reading only its bytes: safetensors' ``get_slice``, into memory we own. No checksum
        covers a part, so a file that records checksums is read whole (:meth:`read`)."""
        dtype, shape, begin = self.tensors[key]
        if not shape:
            return self.read(key)
        bounds = [s.indices(d)[:2] for s, d in zip(index, shape)]
        bounds += [(0, d) for d in shape[len(bounds) :]]
        out = np.empty(tuple(max(0, b - a) for a, b in bounds), dtype)
        if out.size == 0:
            return out
        # axes after ``j`` are whole: each index of the axes before it is one contiguous run
        j = len(shape) - 1
        while j > 0 and bounds[j] == (0, shape[j]):
            j -= 1
        inner = int(np.prod(shape[j + 1 :], dtype=np.int64)) * dtype.itemsize
        strides = [int(np.prod(shape[a + 1 :], dtype=np.int64)) * dtype.itemsize for a in range(j)]
        runs = out.reshape(-1).view(np.uint8).reshape(-1, (bounds[j][1] - bounds[j][0]) * inner)
        for r, lead in enumerate(np.ndindex(*[b - a for a, b in bounds[:j]])):
            offset = sum((a + k) * st for (a, _), k, st in zip(bounds, lead, strides))
            self._pread(runs[r].data, self._start + begin + offset + bounds[j][0] * inner)
        return out

    def read(self, key: str, layer: int | None = None, axis: int = 0) -> np.ndarray:
        shape, dtype = self.spec(key, None if layer is None else axis)
        out = np.empty(shape, dtype)
        self.read_into(key, out, layer, axis)
        return out

    def _verify(self, key: str, layer: int | None, data) -> None:
        want = self.checksums.get(key)
        if want is None:
            if self.checksums:
                raise CheckpointFormatError(
                    f"checkpoint {self.path!r}",
                    f"records checksums but none for tensor {key!r}: its metadata was damaged",
                )
            return  # a plain file from elsewhere: nothing recorded to check
        if layer is not None:
            want = want.get("layers") if isinstance(want, dict) else None
            if not isinstance(want, list) or layer >= len(want):
                raise CheckpointFormatError(
                    f"checkpoint {self.path!r}",
                    f"has no checksum of tensor {key!r}'s layer {layer}",
                )
            want = want[layer]
        elif not isinstance(want, str):
            raise CheckpointFormatError(
                f"checkpoint {self.path!r}", f"records per-layer checksums of tensor {key!r}"
            )
        got = _hex(data)
        if got != want:
            raise ChecksumMismatchError(
                self.path, key if layer is None else f"{key}[layer {layer}]", want, got
            )
