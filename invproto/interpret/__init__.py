"""Interpreting part-prototype networks in pixel space.

* :mod:`~invproto.interpret.receptive_field` -- the exact receptive field of
  every feature cell of a conv stack, and the two pixel-space heat maps of a
  cell-level similarity map (PixPNet's Gaussian receptive-field mapping and
  ProtoPNet's bicubic upsampling),
* :mod:`~invproto.interpret.relevance` -- the relevance ordering test (does a
  heat map rank the pixels a prototype responds to first?),
* :mod:`~invproto.interpret.part_metrics` -- consistency and stability of
  prototypes against annotated object parts.
"""
