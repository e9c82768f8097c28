"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzipped).

An IDX file is a big-endian header -- two zero bytes, a dtype code, the number
of dimensions ``d`` -- followed by ``d`` uint32 sizes and the raw data. We
only need dtype code 0x08 (uint8). Every inconsistency raises
:class:`~invproto.data.root.CorruptDataError` naming the file; a file that cannot be
read at all (permissions, I/O) raises :class:`~invproto.data.root.UnreadableDataError`.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from invproto.data.root import CorruptDataError, unreadable

_UINT8 = 0x08


def read_idx(path: Path, expected_count: int | None = None) -> np.ndarray:
    """Read an IDX uint8 array from ``path`` (``.gz`` is decompressed).

    Returns an array of shape ``(count, *dims)`` and dtype uint8.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:  # permissions, a folder of that name, I/O: not the file's content
        raise unreadable(error) from None
    try:
        raw = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise CorruptDataError(f"invproto: cannot read {path}: {error}; delete it and download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UINT8:
        raise CorruptDataError(f"invproto: {path} is not an IDX uint8 file (bad magic number "
                               f"{raw[:4].hex()}); delete it and download it again")
    n_dims = raw[3]
    header_size = 4 + 4 * n_dims
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=n_dims, offset=4))
    if len(raw) - header_size != int(np.prod(shape)):
        raise CorruptDataError(f"invproto: {path} is truncated or padded: header promises shape "
                               f"{shape} ({int(np.prod(shape))} bytes), file has "
                               f"{len(raw) - header_size}; delete it and download it again")
    if expected_count is not None and shape[0] != expected_count:
        raise CorruptDataError(f"invproto: {path} holds {shape[0]} items, expected {expected_count}; "
                               "delete it and download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)
