"""Ahead-of-time tier: the tuned kernels of small networks as a compiled extension, loaded without numba.

A process that loads numba's cached kernels spends about 1.5 s before its first step: numba's import,
then its typing and lowering registries (which import SciPy), then the cache index. For the
main job (digits, 64-64-10, a tenth of a second of training) that is most of the wall time. So
``loopgrad warmup`` also builds, with numba's ``pycc``, one extension module per dtype that holds
the epoch (``network.train_epoch_into``), the forward pass and the cost. A later process imports
it like any extension (milliseconds) and never imports numba for those calls.

The module is built from the same source with the same flags, but serial: ``prange`` is ``range``
(``_numba.AOT_BUILD``). The kernels' partition into blocks is fixed and a block's arithmetic does
not depend on the thread that runs it, so the results are the tuned kernels' bit for bit (a test
compares them). Serial code is slower only where the tuned kernels would go parallel, so the
tier serves networks of at most ``MAX_PARAMS`` parameters; larger ones use numba as before.

The module lives beside numba's cache (``NUMBA_CACHE_DIR``, else the user's cache folder), named by
a hash of the kernels' source, the numba, NumPy and Python versions and the CPU, so a stale or foreign
module is never loaded. It is written atomically with its SHA-256 beside it; one whose bytes do not
match (truncated, altered) or that cannot be loaded is ignored: the kernels then run through numba.
Building needs a C compiler, Python's headers and setuptools (numba's ``pycc``); where one is
missing there is no AOT tier and nothing else changes.
"""
import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import sys
import tempfile

import numpy as np

ENV_BUILD = "LOOPGRAD_AOT_BUILD"
# networks up to this many parameters run on the AOT module (64-64-10 has 4810); larger ones gain
# from the tuned kernels' parallel loops
MAX_PARAMS = 1 << 15
_DTYPES = {"float32": "f4", "float64": "f8"}
_loaded = {}  # dtype name -> module, or None when there is none to load


def _numba_version():
    # without importing numba (0.3 s): its installed metadata
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("numba")
    except PackageNotFoundError:
        return "?"


def _cpu():
    """What the machine code is specific to: the CPU's model and feature flags (Linux), else the platform."""
    try:
        with open("/proc/cpuinfo") as f:
            fields = {}
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        return fields.get("model name", "") + "|" + fields.get("flags", "")
    except OSError:
        return platform.machine() + "|" + platform.processor()


def folder():
    """Where the AOT modules live: beside numba's cache when NUMBA_CACHE_DIR is set, else the user's cache."""
    base = os.environ.get("NUMBA_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(base, "loopgrad-aot")


def module_name(dtype):
    return f"_loopgrad_aot_{_DTYPES[dtype]}"


def path(dtype):
    """The file of the AOT module for ``dtype`` built from this very source, numba, NumPy, Python and CPU."""
    from ._stamp import source_stamp

    # NumPy's version too: the module's argument unboxing is compiled against NumPy's C API
    parts = [source_stamp(), _numba_version(), np.__version__, sys.version, _cpu()]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return os.path.join(folder(), f"{module_name(dtype)}-{digest[:24]}{suffix}")


def _digest(file):
    with open(file, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def intact(file):
    """True when ``file`` exists and matches the SHA-256 recorded beside it at build time: a module
    truncated or altered on disk is never loaded (its machine code could crash the process)."""
    try:
        with open(file + ".sha256") as f:
            return f.read().strip() == _digest(file)
    except OSError:
        return False


def load(dtype):
    """The AOT module for ``dtype``, or None where it is not built (or cannot be loaded)."""
    dtype = str(dtype)
    if dtype not in _loaded:
        _loaded[dtype] = None
        if dtype in _DTYPES and os.environ.get(ENV_BUILD) != "1":
            file = path(dtype)
            if intact(file):
                try:
                    spec = importlib.util.spec_from_file_location(module_name(dtype), file)
                    module = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(module)
                    _loaded[dtype] = module
                except Exception:  # noqa: BLE001 - foreign or unloadable: numba serves instead
                    _loaded[dtype] = None
    return _loaded[dtype]


def build(dtype):
    """Build the AOT module for ``dtype`` in a child process (numba compiles it there with
    ``_numba.AOT_BUILD`` set); returns its path, or None when the build failed."""
    import subprocess

    target = path(dtype)
    if intact(target):
        return target
    env = dict(os.environ, **{ENV_BUILD: "1"})
    result = subprocess.run([sys.executable, "-c", f"from loopgrad import _aot; _aot._build_here({dtype!r})"],
                            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    return target if result.returncode == 0 and intact(target) else None


def _build_here(dtype):
    from numba import types
    from numba.pycc import CC
    from numba.pycc import compiler as pycc_compiler

    class _ReleaseGil(pycc_compiler.Flags):
        # pycc's exports keep the GIL; loopgrad's kernels are nogil, and fit's Ctrl-C (another thread
        # sets ``stop``) and any other Python thread must run while an epoch does
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.release_gil = True

    pycc_compiler.Flags = _ReleaseGil

    from llvmlite import binding
    from numba.core import codegen as numba_codegen

    from . import _numba

    finalize = numba_codegen.AOTCodeLibrary.finalize

    def finalize_with_leaves(library):
        # the kernels call the register blocks by their symbols (``_numba.outer_rows``): the module's one
        # library defines them, hidden, so that the module needs nothing from outside it
        if _numba.EXTERN_BLOCKS and library.name == module_name(dtype):
            leaves = library.create_ir_module("leaves")
            _numba.define_leaves(leaves)
            parsed = binding.parse_assembly(str(leaves))
            for fn in parsed.functions:
                if fn.name.startswith(_numba.LEAF_PREFIX):
                    fn.visibility = "hidden"
            library.add_llvm_module(parsed)
        finalize(library)

    numba_codegen.AOTCodeLibrary.finalize = finalize_with_leaves

    from . import layout
    from .kernels import network

    T = {"float32": types.float32, "float64": types.float64}[dtype]
    vec, mat, i8, f8 = T[::1], T[:, ::1], types.int64, types.float64
    net = (types.int64[:, ::1], i8, vec, vec, vec)
    update = (i8, f8[::1], mat)
    buf = (vec, types.int64[:, ::1], i8, vec, vec, vec, vec)

    def train_epoch(layers, loss, theta, grad, decay, code, hyper, state, work, slots, rows, y, losses, norms,
                    weights, X, Y, W, order, batch_size, t0, noise, stop):
        return network.train_epoch_into(layout.Net(layers, loss, theta, grad, decay),
                                        layout.Buffers(work, slots, rows, y, losses, norms, weights),
                                        X, Y, W, order, batch_size, layout.Update(code, hyper, state), t0, noise, stop)

    def forward(layers, loss, theta, grad, decay, work, slots, rows, y, losses, norms, weights, m):
        network.forward_into(layout.Net(layers, loss, theta, grad, decay),
                             layout.Buffers(work, slots, rows, y, losses, norms, weights), m)

    def cost(layers, loss, theta, grad, decay, work, slots, rows, y, losses, norms, weights, m):
        return network.cost(layout.Net(layers, loss, theta, grad, decay),
                            layout.Buffers(work, slots, rows, y, losses, norms, weights), m)

    os.makedirs(folder(), exist_ok=True)
    target = path(dtype)
    with tempfile.TemporaryDirectory(dir=folder()) as scratch:
        cc = CC(module_name(dtype))
        cc.output_dir = scratch
        cc.target_cpu = "host"
        cc.verbose = False
        cc.export("train_epoch", types.Tuple((f8, i8))(*net, *update, *buf, mat, mat, vec, types.int64[::1], i8, i8,
                                                          mat, types.int64[::1]))(train_epoch)
        cc.export("forward", types.void(*net, *buf, i8))(forward)
        cc.export("cost", T(*net, *buf, i8))(cost)
        cc.compile()
        module = os.path.join(scratch, cc.output_file)
        # the checksum goes in place first: a crash between the two leaves a module that fails the
        # check (and is built again), never one that passes it unchecked
        with open(os.path.join(scratch, "digest"), "w") as f:
            f.write(_digest(module))
        os.replace(os.path.join(scratch, "digest"), target + ".sha256")
        os.replace(module, target)
    return target


def _fits(dtype, *arrays):
    """True when every array is C-contiguous of ``dtype``, as the module's signatures take them."""
    return all(a.dtype == dtype and a.flags.c_contiguous for a in arrays)


class Network:
    """``kernels.network``'s entry points that ``MLP`` calls, served by the AOT module: the epoch, the
    forward pass and the cost over the same ``Net``/``Buffers``/``Update`` (flattened into the
    module's arguments). Arguments the module's signatures do not take (another layout of X, a
    sparse input) and every other entry point go to ``kernels.network`` itself, through numba: the
    same kernels, so the same bits."""

    def __init__(self, module, dtype):
        self.module, self.dtype = module, np.dtype(dtype)

    def __getattr__(self, name):
        from .kernels import network

        return getattr(network, name)

    def train_epoch_into(self, net, buf, X, Y, W, order, batch_size, update, t0, noise, stop):
        if not (_fits(self.dtype, X, Y, W, noise) and _fits(np.int64, order, stop)):
            from . import _compute
            from .kernels import network

            # numba's kernels may open parallel regions: on the compute thread, as everywhere
            return _compute.run(lambda: network.train_epoch_into(net, buf, X, Y, W, order, batch_size, update, t0,
                                                                 noise, stop))
        return self.module.train_epoch(*net, *update, *buf, X, Y, W, order, batch_size, t0, noise, stop)

    def forward_into(self, net, buf, m):
        self.module.forward(*net, *buf, m)

    def cost(self, net, buf, m):
        return self.module.cost(*net, *buf, m)


_networks = {}


def network(dtype):
    """The AOT ``Network`` for ``dtype``, or None where its module is not built."""
    dtype = str(dtype)
    if dtype not in _networks:
        module = load(dtype)
        _networks[dtype] = None if module is None else Network(module, dtype)
    return _networks[dtype]
