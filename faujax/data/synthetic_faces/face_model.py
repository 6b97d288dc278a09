"""Latent expression model of the synthetic faces: identities, AU intensities and expression labels.

Every frame of a subject is a blend of neutral and the six basic expressions. Each basic
expression has a FACS prototype (the EMFACS-style AU combinations of Ekman & Friesen; FACS is the
basis of the AU-based blended-expression methods SVML-RGCN reviews, its Sec. 2) that sets AU
intensities on the 0-5 scale; the frame's AU intensities are the blend-weighted prototypes plus person-specific habits
(per-subject AU offsets), rare spontaneous AUs, blinks and noise, followed by the antagonisms of
the facial muscles (AU12 vs AU15, AU5 vs AU43, AU24 vs AU25/26). Hence AUs co-occur and exclude each
other as in spontaneous data (AU6 with AU12 positive, AU12 with AU15 negative).

The expression labels come from the same latent blend: the 7-class category
(``faujax.labels.EXPRESSIONS_7``, neutral first), valence and arousal in [-1, 1] from a circumplex
position per expression, and the 6-dim multi-label over ``faujax.labels.BASIC_6``.

All randomness is drawn from ``np.random.default_rng([seed, subject, frame, stream])`` so that an
example depends only on (seed, subject, frame): generation order and parallelism do not matter.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from faujax import labels

ALL_AUS = labels.ALL_AUS
NUM_AUS = len(ALL_AUS)
AU_INDEX: dict[int, int] = {au: i for i, au in enumerate(ALL_AUS)}

# Random streams (the last entry of the seed sequence).
_STREAM_IDENTITY = 11
_STREAM_EXPRESSION = 23
_STREAM_NUISANCE = 37

# FACS prototypes: AU -> (intensity at full expression, probability the AU is part of a given
# frame's display). Optional AUs (probability < 1) are the bracketed AUs of the prototypes.
EXPRESSION_PROTOTYPES: dict[str, dict[int, tuple[float, float]]] = {
    'happy': {6: (3.6, 0.9), 12: (4.6, 1.0), 14: (2.8, 0.45), 25: (2.8, 0.5), 26: (1.5, 0.2)},
    'sad': {1: (3.6, 0.95), 4: (3.0, 0.9), 15: (3.6, 1.0), 17: (3.0, 0.55)},
    'surprise': {1: (4.0, 1.0), 2: (4.0, 1.0), 5: (3.5, 0.85), 25: (3.8, 0.95), 26: (3.8, 0.8)},
    'fear': {1: (3.6, 1.0), 2: (3.0, 0.9), 4: (3.0, 0.9), 5: (3.6, 0.9), 7: (2.8, 0.7),
             20: (3.8, 1.0), 25: (3.0, 0.8), 26: (2.6, 0.6)},
    'disgust': {9: (4.0, 1.0), 10: (3.8, 0.9), 15: (2.4, 0.45), 17: (2.8, 0.5), 4: (1.6, 0.4),
                14: (2.4, 0.3)},
    'anger': {4: (4.0, 1.0), 5: (3.0, 0.6), 7: (3.6, 0.9), 23: (3.6, 0.85), 24: (3.2, 0.6),
              17: (2.4, 0.35)},
}
# Circumplex (valence, arousal) of each category (Russell's circumplex, rounded).
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    'neutral': (0.0, 0.0),
    'happy': (0.8, 0.35),
    'sad': (-0.7, -0.35),
    'surprise': (0.15, 0.8),
    'fear': (-0.65, 0.65),
    'disgust': (-0.7, 0.25),
    'anger': (-0.6, 0.75),
}
# Expressions that blend with a dominant one (the RAF-DB compound expressions).
COMPATIBLE: dict[str, tuple[str, ...]] = {
    'happy': ('surprise', 'disgust'),
    'sad': ('fear', 'anger', 'surprise', 'disgust'),
    'surprise': ('happy', 'fear', 'sad', 'anger', 'disgust'),
    'fear': ('surprise', 'sad', 'anger', 'disgust'),
    'disgust': ('anger', 'sad', 'surprise', 'fear', 'happy'),
    'anger': ('disgust', 'sad', 'fear', 'surprise'),
}
BASIC = labels.EXPRESSIONS_7[1:]  # The six basic expressions in EXPRESSIONS_7 order.

# Expression weight above which a basic expression counts in the category / multi-label.
CATEGORY_THRESHOLD = 0.3
MULTI_LABEL_THRESHOLD = 0.3

# How strongly each AU shows in the pixels per intensity unit (1 = full FACS movement). Subtle AUs
# move little and are best inferred from the AUs they co-occur with.
AU_VISIBILITY: dict[int, float] = {
    1: 1.0, 2: 1.0, 4: 0.9, 5: 0.9, 6: 0.7, 7: 0.55, 9: 0.8, 10: 0.6, 12: 1.0, 14: 0.4,
    15: 0.8, 17: 0.6, 20: 0.75, 23: 0.5, 24: 0.5, 25: 1.0, 26: 0.9, 43: 1.0,
}


def _rng(seed: int, subject: int, frame: int, stream: int) -> np.random.Generator:
  return np.random.default_rng([int(seed), int(subject), int(frame) + 1, stream])


@dataclasses.dataclass(frozen=True)
class Identity:
  """Persistent appearance and behaviour of one subject.

  Geometry is in canonical face units (x right, y down, half face width ~1, eyes near y=-0.18).
  """
  subject: int
  face_w: float
  face_h: float
  jaw_power: float
  eye_sep: float
  eye_w: float
  eye_h: float
  eye_y: float
  brow_gap: float
  brow_arch: float
  brow_thick: float
  nose_tip_y: float
  nose_w: float
  mouth_y: float
  mouth_w: float
  upper_lip: float
  lower_lip: float
  skin: np.ndarray  # (3,) RGB in [0, 1]
  lip: np.ndarray
  hair: np.ndarray
  iris: np.ndarray
  background: np.ndarray  # (2, 3) gradient end colours
  hairline: float
  hair_volume: float
  fringe: bool
  long_hair: bool
  glasses: bool
  stubble: float  # alpha of the beard shadow, 0 = none
  wrinkle: float  # base visibility of texture cues (furrows, wrinkles)
  expressivity: float  # multiplies every AU displacement
  habits: np.ndarray  # (NUM_AUS,) per-subject AU intensity offsets
  propensity: np.ndarray  # (7,) category probabilities, EXPRESSIONS_7 order
  dots: np.ndarray  # (8, 2) chin-boss texture positions in the unit square


def sample_identity(seed: int, subject: int) -> Identity:
  """Draws the persistent identity of `subject` for a dataset seed."""
  r = _rng(seed, subject, -1, _STREAM_IDENTITY)
  lightness = r.uniform(0.0, 1.0)
  dark = np.array([0.33, 0.21, 0.14])
  light = np.array([0.97, 0.82, 0.71])
  skin = np.clip(dark + (light - dark) * lightness + r.normal(0, 0.02, 3), 0, 1)
  lip = np.clip(skin * np.array([0.82, 0.52, 0.52]) + np.array([0.08, 0.0, 0.02]), 0, 1)
  hair_palette = np.array([
      [0.06, 0.05, 0.05], [0.22, 0.14, 0.08], [0.42, 0.28, 0.15], [0.80, 0.66, 0.38],
      [0.58, 0.26, 0.12], [0.62, 0.62, 0.62]])
  hair = np.clip(hair_palette[r.integers(len(hair_palette))] + r.normal(0, 0.03, 3), 0, 1)
  iris_palette = np.array([[0.25, 0.15, 0.08], [0.35, 0.45, 0.6], [0.3, 0.4, 0.25], [0.12, 0.08, 0.05]])
  iris = iris_palette[r.integers(len(iris_palette))]
  background = np.clip(r.uniform(0.1, 0.9, (2, 3)), 0, 1)
  habits = np.zeros(NUM_AUS)
  n_habits = r.integers(1, 4)
  for idx in r.choice(NUM_AUS, size=n_habits, replace=False):
    habits[idx] = r.uniform(0.4, 2.4)
  propensity = r.dirichlet(np.array([3.0, 1.6, 1.0, 1.0, 0.8, 0.8, 1.0]) * 3.0)
  return Identity(
      subject=int(subject),
      face_w=r.uniform(0.9, 1.05), face_h=r.uniform(0.92, 1.08), jaw_power=r.uniform(0.75, 1.15),
      eye_sep=r.uniform(0.36, 0.44), eye_w=r.uniform(0.16, 0.2), eye_h=r.uniform(0.075, 0.1),
      eye_y=r.uniform(-0.22, -0.14), brow_gap=r.uniform(0.17, 0.25),
      brow_arch=r.uniform(0.02, 0.07), brow_thick=r.uniform(0.04, 0.075),
      nose_tip_y=r.uniform(0.16, 0.26), nose_w=r.uniform(0.13, 0.19),
      mouth_y=r.uniform(0.5, 0.58), mouth_w=r.uniform(0.28, 0.36),
      upper_lip=r.uniform(0.045, 0.075), lower_lip=r.uniform(0.06, 0.095),
      skin=skin, lip=lip, hair=hair, iris=iris, background=background,
      hairline=r.uniform(-0.9, -0.62), hair_volume=r.uniform(0.05, 0.3),
      fringe=bool(r.random() < 0.3), long_hair=bool(r.random() < 0.4),
      glasses=bool(r.random() < 0.2), stubble=float(r.random() < 0.15) * r.uniform(0.15, 0.4),
      wrinkle=r.uniform(0.5, 1.0), expressivity=r.uniform(0.7, 1.2),
      habits=habits, propensity=propensity, dots=r.uniform(0, 1, (8, 2)),
  )


@dataclasses.dataclass(frozen=True)
class FrameState:
  """Latent state of one frame and the labels derived from it.

  Attributes:
    weights: (6,) blend weights of the basic expressions in EXPRESSIONS_7[1:] order.
    au_strength: (NUM_AUS,) continuous AU intensities in [0, 5] (ALL_AUS order) that the renderer
      draws.
    au_intensity: (NUM_AUS,) labelled intensities: `au_strength` rounded to integers 0-5.
    au_occurrence: (NUM_AUS,) 0/1, intensity >= OCCURRENCE_THRESHOLD.
    expression: category index into EXPRESSIONS_7.
    valence, arousal: floats in [-1, 1].
    expression_multi: (6,) 0/1 multi-label over BASIC_6.
  """
  weights: np.ndarray
  au_strength: np.ndarray
  au_intensity: np.ndarray
  au_occurrence: np.ndarray
  expression: int
  valence: float
  arousal: float
  expression_multi: np.ndarray


def labels_from_state(weights: np.ndarray, au_strength: np.ndarray, va_noise: np.ndarray) -> FrameState:
  """Derives every label from the latent blend `weights` (6,) and AU strengths (NUM_AUS,)."""
  weights = np.asarray(weights, np.float64)
  au_strength = np.clip(np.asarray(au_strength, np.float64), 0.0, 5.0)
  if weights.shape != (6,) or au_strength.shape != (NUM_AUS,):
    raise ValueError(f'weights must have shape (6,) and au_strength ({NUM_AUS},); got '
                     f'{weights.shape} and {au_strength.shape}.')
  au_intensity = np.round(au_strength)
  occurrence = (au_intensity >= labels.OCCURRENCE_THRESHOLD).astype(np.float32)
  expression = int(np.argmax(weights)) + 1 if weights.max() >= CATEGORY_THRESHOLD else 0
  multi_basic = weights >= MULTI_LABEL_THRESHOLD
  multi = np.array([multi_basic[BASIC.index(name)] for name in labels.BASIC_6], np.float32)
  total = max(1.0, float(weights.sum()))
  va = np.array([CIRCUMPLEX[name] for name in BASIC])  # (6, 2)
  valence, arousal = np.clip(weights @ va / total + va_noise, -1.0, 1.0)
  return FrameState(weights=weights, au_strength=au_strength, au_intensity=au_intensity,
                    au_occurrence=occurrence, expression=expression, valence=float(valence),
                    arousal=float(arousal), expression_multi=multi)


def sample_frame(identity: Identity, seed: int, frame: int) -> FrameState:
  """Draws the latent expression state of one frame of `identity` and its labels."""
  r = _rng(seed, identity.subject, frame, _STREAM_EXPRESSION)
  weights = np.zeros(6)
  category = r.choice(7, p=identity.propensity)
  if category == 0:
    if r.random() < 0.5:  # A faint hint of some expression, below the category threshold.
      weights[r.integers(6)] = r.uniform(0.0, 0.28)
  else:
    dom = category - 1
    weights[dom] = r.uniform(0.35, 1.0)
    if r.random() < 0.3:
      second = BASIC.index(r.choice(COMPATIBLE[BASIC[dom]]))
      weights[second] = r.uniform(0.3, 0.85) * weights[dom]

  strength = np.zeros(NUM_AUS)
  for e, w in enumerate(weights):
    if w <= 0:
      continue
    for au, (peak, prob) in EXPRESSION_PROTOTYPES[BASIC[e]].items():
      if r.random() < prob:
        strength[AU_INDEX[au]] += peak * w * r.uniform(0.8, 1.25)
  # Person-specific habits, spontaneous AUs, blinks and noise.
  strength += identity.habits * r.uniform(0.5, 1.3, NUM_AUS)
  spontaneous = r.random(NUM_AUS) < 0.04
  strength += spontaneous * r.uniform(1.0, 4.0, NUM_AUS)
  if r.random() < 0.07:
    strength[AU_INDEX[43]] += r.uniform(1.5, 5.0)
  strength += r.normal(0.0, 0.25, NUM_AUS)
  strength = np.clip(strength, 0.0, 5.0)

  # Antagonistic muscles.
  i12, i15, i5, i43, i24, i25, i26 = (AU_INDEX[a] for a in (12, 15, 5, 43, 24, 25, 26))
  if strength[i12] >= strength[i15]:
    strength[i15] = max(0.0, strength[i15] - 0.8 * strength[i12])
  else:
    strength[i12] = max(0.0, strength[i12] - 0.8 * strength[i15])
  if strength[i43] >= 1.0:
    strength[i5] = 0.0
  if strength[i24] > strength[i25]:
    strength[i25] = 0.0
    strength[i26] *= 0.3
  if strength[i26] >= 1.5 and strength[i25] < 1.5 and r.random() < 0.85:
    strength[i25] = max(strength[i25], strength[i26] * r.uniform(0.7, 1.0))
  va_noise = r.normal(0.0, 0.08, 2)
  return labels_from_state(weights, strength, va_noise)


@dataclasses.dataclass(frozen=True)
class Nuisance:
  """Per-frame imaging conditions (in output pixels where a unit is given)."""
  rotation: float  # in-plane rotation, radians
  scale: float  # pixels per canonical face unit, as a fraction of the image size
  shift: np.ndarray  # (2,) face centre offset from the image centre, fraction of the image size
  yaw: float  # radians
  light_dir: float  # direction of the illumination gradient, radians
  light_strength: float
  ambient: float
  noise: float  # std of additive Gaussian noise on [0, 1] intensities
  blur: float  # Gaussian blur sigma as a fraction of the image size
  occlusion: str  # 'none', 'eyes', 'mouth', 'patch'
  occlusion_params: np.ndarray  # (6,) uniforms that place and colour the occluder
  noise_seed: int


def sample_nuisance(seed: int, subject: int, frame: int) -> Nuisance:
  """Draws the imaging conditions of one frame."""
  r = _rng(seed, subject, frame, _STREAM_NUISANCE)
  occ = r.choice(['none', 'eyes', 'mouth', 'patch'], p=[0.72, 0.1, 0.1, 0.08])
  return Nuisance(
      rotation=float(np.deg2rad(np.clip(r.normal(0, 7.0), -20, 20))),
      scale=r.uniform(0.32, 0.38),
      shift=np.clip(r.normal(0, 0.035, 2), -0.08, 0.08) + np.array([0.0, 0.05]),
      yaw=r.uniform(-0.35, 0.35),
      light_dir=r.uniform(0, 2 * np.pi),
      light_strength=r.uniform(0.0, 0.5),
      ambient=r.uniform(0.75, 1.12),
      noise=r.uniform(0.004, 0.035),
      blur=r.uniform(0.0, 0.008),
      occlusion=str(occ),
      occlusion_params=r.uniform(0, 1, 6),
      noise_seed=int(r.integers(2**31 - 1)),
  )


def neutral_nuisance() -> Nuisance:
  """Frontal, centred, clean imaging conditions (for tests and figures)."""
  return Nuisance(rotation=0.0, scale=0.3, shift=np.array([0.0, 0.05]), yaw=0.0, light_dir=0.0,
                  light_strength=0.0, ambient=1.0, noise=0.0, blur=0.0, occlusion='none',
                  occlusion_params=np.full(6, 0.5), noise_seed=0)
