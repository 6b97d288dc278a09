"""One synthetic example from (seed, subject, frame): identity + latent state + nuisances -> image.

`make_example` is the pure function the tfds builder maps over all (subject, frame) pairs; it
depends on nothing but its arguments, so generation order and parallelism do not change the data.
"""

from __future__ import annotations

import numpy as np

from faujax.data.synthetic_faces import face_model
from faujax.data.synthetic_faces import renderer


def make_example(seed: int, subject: int, frame: int, image_size: int,
                 identity: face_model.Identity | None = None) -> dict[str, np.ndarray]:
  """Renders frame `frame` of `subject`.

  Returns:
    dict with 'image' uint8 (S, S, 3), 'landmarks' float32 (68, 2), 'au_intensity' float32 (18,)
    (ALL_AUS order, integers 0-5), 'au' float32 (18,) occurrence, 'au_strength' float32 (18,)
    (the continuous intensities drawn), 'expression' int64, 'valence', 'arousal' float32,
    'expression_multi' float32 (6,), 'subject' int64.
  """
  if identity is None:
    identity = face_model.sample_identity(seed, subject)
  state = face_model.sample_frame(identity, seed, frame)
  nuisance = face_model.sample_nuisance(seed, subject, frame)
  image, landmarks = renderer.render_face(identity, state.au_strength, nuisance, image_size)
  return {
      'image': image,
      'landmarks': landmarks,
      'au_intensity': state.au_intensity.astype(np.float32),
      'au': state.au_occurrence.astype(np.float32),
      'au_strength': state.au_strength.astype(np.float32),
      'expression': np.int64(state.expression),
      'valence': np.float32(state.valence),
      'arousal': np.float32(state.arousal),
      'expression_multi': state.expression_multi.astype(np.float32),
      'subject': np.int64(subject),
  }
