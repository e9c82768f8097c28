"""NumPy-2 compatibility for edflow 0.4.0 and chainer 7.8.1 -- the one place it lives.

edflow (2020) and chainer use NumPy aliases that NumPy 2 removed:

* ``np.float`` and ``np.int`` (edflow's checkpoint hooks, explorer and
  sequence believers),
* ``np.sctypes`` (chainer's ``functions/array/as_strided.py``).

``install()`` registers a tiny import hook. It does nothing until the first
``import edflow`` or ``import chainer``; then it restores the three aliases on
the ``numpy`` module and silences the ``pkg_resources`` deprecation warning
that chainer triggers. Numpy is not imported at interpreter start-up.

The same hook patches three edflow modules right after they are imported:

* ``edflow.main``: ``edflow -p logs/<run> [-t]`` without ``-b`` reuses the
  run's saved config (:mod:`invproto.config.resume`); plain edflow fails on
  the empty config. Under torchrun every rank then trains or evaluates with
  rank 0's config and checkpoint;
* ``edflow.iterators.batches``: ``make_batches`` batches in-memory array
  datasets whole instead of example by example, and gives each rank its shard
  under torchrun (:mod:`invproto.data.batches`);
* ``edflow.custom_logging``: under torchrun ``run.init`` starts the process
  group, and only rank 0 creates a run directory
  (:func:`init_run`);
* ``edflow.hooks.checkpoint_hooks.common``: the latest checkpoint is the one
  with the highest step, not the newest file (:func:`invproto.io.latest_checkpoint`);
* ``edflow.iterators.model_iterator``: an :class:`~invproto.errors.InvprotoError`
  raised while iterating is not handed to edflow's ``at_exception`` hooks, which
  would save a checkpoint of the state invproto just refused;
* ``edflow.config``: the ``edflow`` command line is checked before edflow acts
  on it (:func:`check_command_line`; its files and schema already when
  ``import edflow`` starts, before chainer and torch load).

In the ``edflow`` command, an ``InvprotoError`` that escapes ``train``/``test``,
``run.init`` or the checkpoint lookup first removes what this invocation
created (:func:`invproto.config.run.discard_fresh_run_directories`), then ends
the process with ``invproto: <message>`` as one line on stderr and the error's
``exit_status`` (:func:`command_errors`). Elsewhere (tests, notebooks) it is
re-raised. ``run.init`` also finds the code to copy into the run (``code/``)
from any working directory (:func:`invproto.config.command_line.code_root_from_anywhere`).

On that first ``import edflow`` it also restores ``st.cache`` (removed from
streamlit) when streamlit is loaded, so ``edexplore`` -- edflow's explorer run
by ``streamlit run``, which imports streamlit before edflow -- works
(:func:`patch_streamlit`).

The hook must be active before ``edflow`` is imported -- also when the
``edflow`` console script starts, which imports edflow before any invproto
code. ``python -m invproto.compat install`` therefore writes a one-line
``invproto_edflow_compat.pth`` into site-packages (run by ``make install``);
``python -m invproto.compat check`` verifies it.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.abc
import importlib.machinery
import shutil
import sys
import sysconfig
import tempfile
import warnings
from pathlib import Path

from invproto.errors import InvprotoError

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


def patch_edflow_main(module) -> None:
    """Let ``edflow -p <run>`` (no ``-b``) start from the run's saved config; under torchrun, rank 0's."""

    def with_run_config(entry_point):
        def run_entry_point(config, root, checkpoint=None, *args, **kwargs):
            from invproto.config.chaining import resolve_run_references
            from invproto.config.resume import complete_from_run
            from invproto.distributed import broadcast_from_main

            with command_errors():
                complete_from_run(config, training=entry_point.__name__ == "train")
                for line in resolve_run_references(config):  # before edflow saves the config
                    print(line, flush=True)
                # Only rank 0 reads the run directory (the config saved there, its latest checkpoint).
                config, checkpoint = broadcast_from_main((config, checkpoint))
                return entry_point(config, root, checkpoint, *args, **kwargs)

        return run_entry_point

    module.train = with_run_config(module.train)
    module.test = with_run_config(module.test)


def patch_streamlit() -> None:
    """Give edflow's dataset explorer back ``st.cache``, which streamlit removed.

    ``edexplore`` runs ``edflow/explore.py`` under ``streamlit run``; the script
    imports streamlit, then edflow -- which triggers this hook -- and later
    caches the dataset with ``st.cache(persist=False, allow_output_mutation=True)``,
    i.e. one shared, unhashed object per config: today's ``st.cache_resource``.
    Acts only when streamlit is already imported; idempotent.
    """
    streamlit = sys.modules.get("streamlit")
    if streamlit is None or hasattr(streamlit, "cache"):
        return

    def cache(func=None, **_legacy_options):
        return streamlit.cache_resource(func) if func is not None else streamlit.cache_resource

    streamlit.cache = cache


def patch_edflow_batches(module) -> None:
    """Batch in-memory array datasets whole (:mod:`invproto.data.batches`)."""

    def make_batches(*args, **kwargs):
        from invproto.data.batches import make_batches as invproto_make_batches

        return invproto_make_batches(*args, **kwargs)

    module.make_batches = make_batches


def log_level_given(argv: list[str]) -> bool:
    """Whether ``argv`` sets ``-l``/``--log_level`` in any form edflow's parser takes (``-linfo``,
    ``--log_level=info``); ``run.init`` gets edflow's default ``info`` either way."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("-l", "--log_level", default=None)
    try:
        given, _ = parser.parse_known_args(argv)
    except argparse.ArgumentError:  # "-l" without a value: edflow's own parser refuses it first
        return False
    return given.log_level is not None


def patch_edflow_logging(module) -> None:
    """Under torchrun, ``run.init`` creates a run directory on rank 0 only; the console shows edflow's own INFO
    messages (the config, twice; the project tree) only when asked with ``-l info`` (:func:`init_run`)."""
    init = module.run.init

    def init_on_this_rank(cls, **kwargs):
        with command_errors():
            init_run(init, **kwargs)

    module.run.init = classmethod(init_on_this_rank)


def init_run(init, **kwargs) -> None:
    """edflow's ``run.init(**kwargs)`` for this process: only rank 0 creates the run directory.

    Starts the process group first. Rank 0 (and a single process) initialises
    the run as asked; every other rank initialises a fresh run in a throwaway
    directory that is removed when the process exits, copies no code, commits
    nothing and logs warnings only. What those ranks write (logs, evaluation
    outputs) lands there; checkpoints and results are rank 0's alone.
    """
    from invproto import distributed  # imports torch: only once edflow is set up

    distributed.setup()
    if distributed.is_main_process():
        from invproto.config.command_line import code_root_from_anywhere

        quiet = not log_level_given(sys.argv[1:])  # edflow's INFO lines only on request (-l info)
        init(**{**kwargs, "code_root": code_root_from_anywhere(kwargs.get("code_root", ".")),
                **({"log_level": "warn"} if quiet else {})})
        print(f"invproto: run directory {init.__self__.root}" + (" (edflow's own messages: -l info)" if quiet else ""),
              flush=True)
        return
    throwaway = tempfile.mkdtemp(prefix=f"invproto-rank{distributed.rank()}-")
    atexit.register(shutil.rmtree, throwaway, ignore_errors=True)
    init(**{**kwargs, "log_dir": throwaway, "run_dir": None, "code_root": None, "git": False,
            "log_level": "warn"})


def patch_edflow_checkpoints(module) -> None:
    """The latest checkpoint is the one with the highest step, not the newest file.

    See :func:`invproto.io.latest_checkpoint`.
    """
    from invproto.io import latest_checkpoint

    def get_latest_checkpoint(*args, **kwargs):
        with command_errors():
            return latest_checkpoint(*args, **kwargs)

    module.get_latest_checkpoint = get_latest_checkpoint


def patch_edflow_iterator(module) -> None:
    """edflow's iterator hands an exception to every hook's ``at_exception`` (its checkpoint hook then saves);
    an :class:`InvprotoError` is a stop invproto chose (a diverged loss, a refused checkpoint): no hook sees it."""
    iterator = module.PyHookedModelIterator
    handle = iterator._handle_exception

    def _handle_exception(self, exception):
        if not isinstance(exception, InvprotoError):
            handle(self, exception)

    iterator._handle_exception = _handle_exception


def patch_edflow_config(module) -> None:
    """The ``edflow`` script calls ``parse_unknown_args`` once, after argparse and before it reads any file
    or creates a run: check the whole command line there (:mod:`invproto.config.command_line`)."""
    parse_unknown_args = module.parse_unknown_args

    def check_then_parse(unknown):
        if not getattr(check_then_parse, "done", False):
            check_then_parse.done = True
            check_command_line(early=False)
        return parse_unknown_args(unknown)

    module.parse_unknown_args = check_then_parse


def check_command_line(early: bool) -> None:
    """In the ``edflow`` command: stop in one line if its command line cannot run. Early (as ``import
    edflow`` starts): files and the schema, in a fraction of a second; late: also the import paths."""
    if is_edflow_command():
        from invproto.config.command_line import check_edflow_command_line

        with command_errors():
            check_edflow_command_line(sys.argv[1:], early=early)


def is_edflow_command() -> bool:
    """Whether this process is the ``edflow`` console script (also under torchrun)."""
    return Path(sys.argv[0]).name == "edflow"


@contextlib.contextmanager
def command_errors():
    """An :class:`InvprotoError` inside removes what this edflow invocation created; in the ``edflow``
    command it then ends the process: ``invproto: <message>`` on stderr, exit status ``exit_status``."""
    try:
        yield
    except InvprotoError as error:
        if "edflow.custom_logging" in sys.modules:
            from invproto.config.run import discard_fresh_run_directories

            discard_fresh_run_directories()
        if not is_edflow_command():
            raise
        print(f"invproto: {error}", file=sys.stderr, flush=True)
        raise SystemExit(error.exit_status) from None


_MODULE_PATCHES = {"edflow.main": patch_edflow_main, "edflow.iterators.batches": patch_edflow_batches,
                   "edflow.custom_logging": patch_edflow_logging,
                   "edflow.hooks.checkpoint_hooks.common": patch_edflow_checkpoints,
                   "edflow.iterators.model_iterator": patch_edflow_iterator,
                   "edflow.config": patch_edflow_config}


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Meta-path finder that patches numpy before edflow/chainer are imported,
    and the modules of ``_MODULE_PATCHES`` right after they are executed.

    It only wraps the spec the regular path finder returns; module contents
    come from the installed packages unchanged.
    """

    def __init__(self):
        self.pending = dict(_MODULE_PATCHES)

    def find_spec(self, fullname, path=None, target=None):
        if fullname in _WATCHED:
            patch_numpy()
            patch_streamlit()
        if fullname == "edflow":
            check_command_line(early=True)
        patch = self.pending.pop(fullname, None)
        if patch is None:
            return None
        if not self.pending:
            sys.meta_path.remove(self)  # everything this hook does is done now
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                patch(module)

            spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Activate the compatibility layer for this interpreter (idempotent)."""
    if any(name in sys.modules for name in _WATCHED):
        patch_numpy()
        patch_streamlit()
    imported = [name for name in _MODULE_PATCHES if name in sys.modules]
    for name in imported:
        _MODULE_PATCHES[name](sys.modules[name])
    if len(imported) < len(_MODULE_PATCHES) and not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


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
