"""invproto: interpretable models with invertible and prototypical structure.

The package is driven by edflow configs (see README.md). Importing it stays
cheap on purpose: sub-packages are imported by the configs that use them.
"""

__version__ = "0.1.0"
