"""ProtoFlow on pixels: a multiscale image flow whose final latent holds the class mixtures.

An image ``x`` is dequantized to ``v`` and mapped by a
:class:`~invproto.modules.image_flow.MultiscaleFlow` to its final latent ``z``
(``(N, D)``) and the parts factored out on the way. Only ``z`` carries class
information: each class's ``K`` Gaussian prototypes live on ``z``, the
factored-out parts are ``N(0, I)`` for every class. So

    log p(x | c) = log p_head(z | c) + log_det,
    log_det      = log|det dv/ds| + log|det d(z, factored)/dv| + log N(factored; 0, I),

with ``s`` the pixel values on [0, 256) (see :class:`~invproto.modules.image_flow.Dequantization`):
``-log2 p(x) / (C*H*W)`` with ``log p(x)`` the marginal under the uniform class
prior is the standard 8-bit bits/dim. A prototype decodes through the inverse
flow with the factored-out parts at their mean 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invproto.config.run import abort_cleanly
from invproto.errors import ConfigError
from invproto.models.protoflow import PrototypeFlow
from invproto.modules.image_flow import Dequantization, ImageFlowParams, MultiscaleFlow, standard_normal_log_prob


class ImagePrototypeFlow(PrototypeFlow):
    """:class:`PrototypeFlow` with a :class:`MultiscaleFlow` on the images themselves.

    ``data_dims = C*S*S``; ``D``, the size of the last level's output, is
    ``C*S*S / 2**(n_levels - 1)`` (each earlier level factors out half: 392 for
    28 px MNIST with two levels).
    """

    @dataclass
    class Params(PrototypeFlow.Params, ImageFlowParams):
        pass

    def __init__(self, config):
        super().__init__(config)
        p = self.params
        with abort_cleanly():
            self.flow = MultiscaleFlow(ImageFlowParams(in_channels=p.in_channels, in_size=p.in_size,
                                                       n_levels=p.n_levels, steps_per_level=p.steps_per_level,
                                                       hidden_channels=p.hidden_channels, seed=p.seed))
        self.dequantization = Dequantization()
        self.data_dims = p.in_channels * p.in_size ** 2
        self.build_head(self.flow.latent_dim, seed=p.seed)

    def latent(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_shape(images)
        v, dequantization_log_det = self.dequantization(images)
        z, factored, flow_log_det = self.flow(v)
        return z, dequantization_log_det + flow_log_det + standard_normal_log_prob(factored)

    def _check_shape(self, images: torch.Tensor) -> None:
        """Stop with one line when ``images`` are not ``(N, in_channels, in_size, in_size)``."""
        p = self.params
        expected = (p.in_channels, p.in_size, p.in_size)
        if tuple(images.shape[1:]) != expected:
            with abort_cleanly():
                raise ConfigError(f"images are {tuple(images.shape[1:])} (C, H, W), but model_params "
                                  f"say in_channels={p.in_channels}, in_size={p.in_size}; set them to the "
                                  f"dataset's image shape")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` -> ``(N, C, S, S)`` images in [-1, 1]; the factored-out parts are set to 0."""
        return self.dequantization.inverse(self.flow.inverse(z))
