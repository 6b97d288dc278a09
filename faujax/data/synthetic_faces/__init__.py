"""The synthetic face dataset: latent expression model, numpy renderer and tfds builder."""

from faujax.data.synthetic_faces.builder import SyntheticFaces
from faujax.data.synthetic_faces.builder import SyntheticFacesConfig
from faujax.data.synthetic_faces.builder import subject_assignment
from faujax.data.synthetic_faces.examples import make_example

__all__ = ['SyntheticFaces', 'SyntheticFacesConfig', 'make_example', 'subject_assignment']
