"""faujax: JAX/Flax graph models of facial action-unit and expression relations.

Importing faujax registers its tensorflow-datasets builders (``synthetic_faces`` and the real
datasets read from a manual directory), so ``tfds.builder('synthetic_faces/bp4d')`` works.
"""

from faujax import data  # noqa: F401  registers the tfds builders

__version__ = '0.1.0'
