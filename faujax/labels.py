"""Label spaces of the datasets faujax knows: AU sets and expression categories.

These constants are the single source of truth for label order. A dataset's
occurrence vector, a model's output and a metric table all use the order given
here (see docs/reference/datasets.md, "AU label spaces").
"""

from __future__ import annotations

# AU sets of the benchmark protocols, in the order the papers report them.
BP4D_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
DISFA_AUS: tuple[int, ...] = (1, 2, 4, 6, 9, 12, 25, 26)
EMOTIONET_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43)

# Union of the three sets: every AU the synthetic renderer draws.
ALL_AUS: tuple[int, ...] = tuple(sorted(set(BP4D_AUS) | set(DISFA_AUS) | set(EMOTIONET_AUS)))

AU_SETS: dict[str, tuple[int, ...]] = {
    'bp4d': BP4D_AUS,
    'disfa': DISFA_AUS,
    'emotionet': EMOTIONET_AUS,
    'all': ALL_AUS,
}

# FACS names, for tables and plots.
AU_NAMES: dict[int, str] = {
    1: 'Inner brow raiser',
    2: 'Outer brow raiser',
    4: 'Brow lowerer',
    5: 'Upper lid raiser',
    6: 'Cheek raiser',
    7: 'Lid tightener',
    9: 'Nose wrinkler',
    10: 'Upper lip raiser',
    12: 'Lip corner puller',
    14: 'Dimpler',
    15: 'Lip corner depressor',
    17: 'Chin raiser',
    20: 'Lip stretcher',
    23: 'Lip tightener',
    24: 'Lip pressor',
    25: 'Lips part',
    26: 'Jaw drop',
    43: 'Eyes closed',
    11: 'Nasolabial deepener',
    13: 'Sharp lip puller',
    16: 'Lower lip depressor',
    18: 'Lip pucker',
    19: 'Tongue show',
    22: 'Lip funneler',
    27: 'Mouth stretch',
    32: 'Lip bite',
    38: 'Nostril dilator',
    39: 'Nostril compressor',
}

# OpenGraphAU's 41 outputs, in its order: 27 AUs, then the left and right version of 7 of them
# ('AUL1', 'AUR1', 'AUL2', ...), each read from a main AU's node (the public
# OpenGraphAU/model/MEFL.py ``Head``; ``opengraphau_label_names``, ``model.sided_nodes``).
OPENGRAPHAU_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
                                    20, 22, 23, 24, 25, 26, 27, 32, 38, 39)
OPENGRAPHAU_SIDED_AUS: tuple[int, ...] = (1, 2, 4, 6, 10, 12, 14)

# AU occurrence threshold on the 0-5 intensity scale (DISFA protocol; also synthetic).
OCCURRENCE_THRESHOLD = 2.0

# The 7 categorical expressions in AffectNet / Emotion-GCN node order (neutral first).
EXPRESSIONS_7: tuple[str, ...] = ('neutral', 'happy', 'sad', 'surprise', 'fear', 'disgust', 'anger')
# AffectNet's 8-class protocol adds contempt as code 7.
EXPRESSIONS_8: tuple[str, ...] = EXPRESSIONS_7 + ('contempt',)
# The 6 basic expressions of multi-label FER (RAF-ML, RAF-DB compound, JAFFE): SVML-RGCN order.
BASIC_6: tuple[str, ...] = ('surprise', 'fear', 'disgust', 'happy', 'sad', 'anger')


# The tasks a dataset declares in its metadata (``faujax.data.dataset_info.DatasetInfo.task``):
# 'au' multi-label AU occurrence, 'expression' single-label classes (+ valence / arousal where
# annotated), 'expression_multi' multi-label expressions.
TASKS: tuple[str, ...] = ('au', 'expression', 'expression_multi')


def au_set(name: str) -> tuple[int, ...]:
  """Returns the AU numbers of a named label space ('bp4d', 'disfa', 'emotionet', 'all')."""
  try:
    return AU_SETS[name]
  except KeyError:
    raise ValueError(
        f'Unknown AU label space {name!r}; expected one of {sorted(AU_SETS)}.') from None


def au_label_names(aus: tuple[int, ...]) -> list[str]:
  """['AU1', 'AU2', ...] for table headers."""
  return [f'AU{a}' for a in aus]


# The name a run of the OpenGraphAU label space records as its dataset (its training data, the
# authors' hybrid of six datasets, has no faujax builder: ``configs/me_graphau/opengraphau.py``).
OPENGRAPHAU_DATASET = 'opengraphau_hybrid'


def opengraphau_aus() -> tuple[int, ...]:
  """The AU number of each of OpenGraphAU's 41 outputs (a sided AU twice: left, then right)."""
  return OPENGRAPHAU_AUS + tuple(a for a in OPENGRAPHAU_SIDED_AUS for _ in 'LR')


def opengraphau_label_names() -> list[str]:
  """OpenGraphAU's 41 output names: 'AU1' ... 'AU39', then 'AUL1', 'AUR1', ... 'AUR14'."""
  return au_label_names(OPENGRAPHAU_AUS) + [f'AU{side}{a}' for a in OPENGRAPHAU_SIDED_AUS
                                            for side in 'LR']
