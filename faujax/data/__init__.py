"""Datasets and input pipeline: tfds builders (registered on import), splits, device augmentation.

Importing this package registers the tfds builders, so ``tfds.builder('synthetic_faces/bp4d',
data_dir=...)`` (and 'bp4d', 'disfa', 'emotionet', 'affectnet', 'aff_wild2', 'raf_ml', 'raf_db',
'jaffe' for the real datasets, built from a manual_dir) work after ``import faujax.data``.
"""

from faujax.data import splits
from faujax.data import synthetic_faces  # Registers `synthetic_faces` with tfds.
# Real-dataset builders: imported for their tfds registration.
from faujax.data import aff_wild2  # noqa: F401
from faujax.data import affectnet  # noqa: F401
from faujax.data import bp4d  # noqa: F401
from faujax.data import disfa  # noqa: F401
from faujax.data import emotionet  # noqa: F401
from faujax.data import jaffe  # noqa: F401
from faujax.data import raf  # noqa: F401

__all__ = ['splits', 'synthetic_faces']
