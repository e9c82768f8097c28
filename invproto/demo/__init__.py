"""A Streamlit page to look inside trained runs: ``invproto-demo --logs logs/`` (from any directory), or
``streamlit run invproto/demo/app.py -- --logs logs/`` in the repository root.

Modules, one job each:

* :mod:`~invproto.demo.runs` -- find the runs under ``logs/``, their checkpoints, scores and metrics,
* :mod:`~invproto.demo.loading` -- build a run's model from its saved config and load a checkpoint
  safely (weights only), on the CPU unless told otherwise; its validation images,
* :mod:`~invproto.demo.images` -- tensors to pictures and uploaded pictures to tensors,
* :mod:`~invproto.demo.views` -- one page section per model kind (AE, IIN, dIIN, prototype
  models, classifiers) and the metrics curves every run has,
* ``app.py`` -- the page: pick a run and a checkpoint, see the views of its kind,
* ``__main__.py`` -- the ``invproto-demo`` command: the page on 127.0.0.1, no usage statistics,
* :mod:`~invproto.demo.options` -- the options both take (``--logs``, ``--device``).
"""
