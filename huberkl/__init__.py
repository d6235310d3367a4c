"""huberkl: the Huber loss read as a KL divergence between Laplace distributions.

Import the maths from :mod:`huberkl.losses`; this package root stays free of torch so
that light commands (``huberkl interpret``) start instantly.
"""

__version__ = "0.1.0"
