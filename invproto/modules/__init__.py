"""Building blocks the models are made of: one copy each.

* :mod:`~invproto.modules.actnorm` -- activation normalisation,
* :mod:`~invproto.modules.convnets` -- strided conv encoder and its mirror decoder,
* :mod:`~invproto.modules.gaussian` -- a VAE's diagonal Gaussian posterior,
* :mod:`~invproto.modules.flow` -- invertible layers and the vector flow (IIN, ProtoFlow),
* :mod:`~invproto.modules.image_flow` -- the multiscale Glow-style image flow,
* :mod:`~invproto.modules.gaussian_mixture` -- class-conditional Gaussian mixtures,
* :mod:`~invproto.modules.backbones` -- convolutional backbones cut at a named layer,
* :mod:`~invproto.modules.distances` -- point/patch-to-prototype distances and similarities.
"""
