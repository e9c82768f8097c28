"""NumPy-2 compatibility for edflow 0.4.0 and chainer 7.8.1 -- the one place it lives.

edflow (2020) and chainer use NumPy aliases that NumPy 2 removed:

* ``np.float`` and ``np.int`` (edflow's checkpoint hooks, explorer and
  sequence believers),
* ``np.sctypes`` (chainer's ``functions/array/as_strided.py``).

``install()`` registers a tiny import hook. It does nothing until the first
``import edflow`` or ``import chainer``; then it restores the three aliases on
the ``numpy`` module and silences the ``pkg_resources`` deprecation warning
that chainer triggers. No other module is touched and numpy is not imported
at interpreter start-up.

The hook must be active before ``edflow`` is imported -- also when the
``edflow`` console script starts, which imports edflow before any invproto
code. ``python -m invproto.compat install`` therefore writes a one-line
``invproto_edflow_compat.pth`` into site-packages (run by ``make install``);
``python -m invproto.compat check`` verifies it.
"""

from __future__ import annotations

import importlib.abc
import sys
import sysconfig
import warnings
from pathlib import Path

PTH_NAME = "invproto_edflow_compat.pth"
PTH_LINE = "import invproto.compat as _c; _c.install()\n"
_WATCHED = ("edflow", "chainer")


def patch_numpy() -> None:
    """Restore the NumPy<2 aliases edflow and chainer rely on (idempotent)."""
    import numpy as np

    for name, value in (("float", float), ("int", int), ("bool", bool), ("object", object)):
        if name not in np.__dict__:
            setattr(np, name, value)
    if "sctypes" not in np.__dict__:
        np.sctypes = {
            "int": [np.int8, np.int16, np.int32, np.int64],
            "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
            "float": [np.float16, np.float32, np.float64],
            "complex": [np.complex64, np.complex128],
            "others": [bool, object, bytes, str, np.void],
        }
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", message=r".*numpy\.distutils", category=DeprecationWarning)


class _PatchBeforeImport(importlib.abc.MetaPathFinder):
    """Meta-path finder that patches numpy when edflow/chainer is first imported.

    It never finds anything itself; it only runs :func:`patch_numpy` once and
    lets the regular finders import the module.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname in _WATCHED:
            patch_numpy()
            sys.meta_path.remove(self)
        return None


def install() -> None:
    """Activate the compatibility layer for this interpreter (idempotent)."""
    if any(name in sys.modules for name in _WATCHED):
        patch_numpy()
    elif not any(isinstance(f, _PatchBeforeImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchBeforeImport())


def pth_path() -> Path:
    """Where the start-up hook lives: this environment's site-packages."""
    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else "check"
    if command == "install":
        pth_path().write_text(PTH_LINE)
        print(f"invproto: edflow NumPy-2 compatibility hook written to {pth_path()}")
        return 0
    if command == "check":
        if not pth_path().is_file():
            print(f"invproto: {pth_path()} is missing; run `python -m invproto.compat install`")
            return 1
        import edflow  # noqa: F401  (fails here if the hook is not active)

        print("invproto: edflow imports with the NumPy-2 compatibility hook")
        return 0
    print("usage: python -m invproto.compat [install|check]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
