"""What compiled kernel code is built from, as one hash (read without importing numba).

numba's disk cache (``_numba._KernelCache``) and the ahead-of-time module (``_aot``) are stale when
any of these files changes: numba alone would watch only each function's own file.
"""
import hashlib
import pathlib

_PACKAGE = pathlib.Path(__file__).parent


def source_stamp(package=_PACKAGE):
    """A hash of every file compiled kernel code is built from: kernels/, layout, tables, _numba."""
    digest = hashlib.sha256()
    for path in sorted([*package.glob("kernels/*.py"), *(package / n for n in ("layout.py", "tables.py", "_numba.py"))]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
