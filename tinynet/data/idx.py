"""Read and write IDX files, the format MNIST ships in.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension,
then the data in C order, big-endian::

    byte 0-1   0x00 0x00
    byte 2     type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
               0x0D float32, 0x0E float64)
    byte 3     number of dimensions, ndim
    4*ndim     the sizes, each a big-endian uint32
    ...        prod(sizes) items

Files compressed with gzip (a ``.gz`` name, or the gzip magic bytes) are
decompressed first. Anything malformed raises ``ValueError`` naming the file,
what was expected and what was found.
"""

import gzip
import os
import zlib

import numpy as np

__all__ = ["read_idx", "write_idx"]

# type code -> big-endian dtype, as the IDX format defines them
_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_NDIM = 32


def _gunzip(data, name):
    """Decompress gzip bytes, turning every decoding failure into ValueError."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{name}: expected valid gzip data, got a broken stream ({exc})") from None


def read_idx(source, *, ndim=None, name=None):
    """Read an IDX file into a NumPy array.

    Parameters
    ----------
    source : str, os.PathLike or bytes-like
        A path to the file (``.gz`` paths are decompressed), or the file's
        bytes. gzip data is recognised by its magic bytes either way.
    ndim : int, optional
        The number of dimensions the caller expects (3 for MNIST images,
        1 for labels). ``None`` accepts any.
    name : str, optional
        How to name the data in error messages; defaults to the path, or
        ``"<bytes>"``.

    Returns
    -------
    numpy.ndarray
        A writable array in native byte order, of the shape the header gives,
        e.g. ``(N, 28, 28)`` uint8 for MNIST images, ``(N,)`` uint8 for labels.

    Raises
    ------
    ValueError
        If the data is not a well-formed IDX file: bad magic, unknown type
        code, unexpected ``ndim``, or a size that does not match the header
        exactly (truncated or trailing bytes).
    OSError
        If ``source`` is a path that cannot be read.
    """
    if isinstance(source, (str, os.PathLike)):
        name = name or os.fspath(source)
        with open(source, "rb") as f:
            data = f.read()
        if os.fspath(source).endswith(".gz") and not data.startswith(_GZIP_MAGIC):
            raise ValueError(f"{name}: expected gzip data (the name ends in .gz), got {data[:2]!r}")
    else:
        name = name or "<bytes>"
        try:
            data = memoryview(source).tobytes()
        except TypeError:
            raise TypeError(f"read_idx expects a path or bytes, got {type(source).__name__}") from None
    if data.startswith(_GZIP_MAGIC):
        data = _gunzip(data, name)
    return _parse(data, name, ndim)


def _parse(data, name, expected_ndim):
    """Check the header of uncompressed IDX bytes and return the array."""
    if len(data) < 4:
        raise ValueError(f"{name}: expected a 4-byte IDX magic number, got only {len(data)} bytes")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{name}: expected an IDX magic number starting with two zero bytes, "
            f"got {data[:4].hex(' ')} (is this an IDX file?)"
        )
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _DTYPES)
        raise ValueError(f"{name}: expected an IDX type code in ({known}), got 0x{code:02X}")
    if expected_ndim is not None and ndim != expected_ndim:
        raise ValueError(f"{name}: expected an IDX file with {expected_ndim} dimensions, got {ndim}")
    if not 1 <= ndim <= _MAX_NDIM:
        raise ValueError(f"{name}: expected 1 to {_MAX_NDIM} dimensions, got {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{name}: expected a {header}-byte header for {ndim} dimensions, "
            f"got only {len(data)} bytes (truncated file)"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _DTYPES[code]
    count = 1
    for size in shape:
        count *= size
    expected, got = count * dtype.itemsize, len(data) - header
    if got != expected:
        problem = "truncated file" if got < expected else "trailing bytes after the data"
        raise ValueError(
            f"{name}: expected {expected} data bytes for shape {shape} of {dtype.name}, "
            f"got {got} ({problem})"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def write_idx(path, array):
    """Write an array as an IDX file (gzip-compressed if ``path`` ends in ``.gz``).

    Parameters
    ----------
    path : str or os.PathLike
        Where to write.
    array : array_like
        Data of dtype uint8, int8, int16, int32, float32 or float64, with
        1 to 32 dimensions.

    Raises
    ------
    ValueError
        If the dtype has no IDX type code or the shape cannot be stored.
    """
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(
            f"write_idx: expected dtype uint8, int8, int16, int32, float32 or float64, "
            f"got {array.dtype}"
        )
    if not 1 <= array.ndim <= _MAX_NDIM:
        raise ValueError(f"write_idx: expected 1 to {_MAX_NDIM} dimensions, got {array.ndim}")
    if any(size >= 2**32 for size in array.shape):
        raise ValueError(f"write_idx: every size must fit in uint32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + b"".join(s.to_bytes(4, "big") for s in array.shape)
    body = np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + body)
