"""Subject-exclusive parts, physical tfds splits and the logical train / validation / test splits.

Convention shared by every faujax dataset builder (synthetic and real): the subjects are divided
into 3 subject-exclusive parts. Each part has two physical tfds splits, ``part{p}`` (its training
subjects) and ``part{p}_val`` (a few held-out subjects, used for validation only while part p is a
training part). A fold k tests on one part t = TEST_PART_OF_FOLD[k] (a class attribute of each
builder; BP4D: {1: 3, 2: 2, 3: 1}, the JAA-Net / ME-GraphAU partition) and trains on the others:

  test       = part{t} + part{t}_val
  train      = part{p} for every p != t
  validation = part{p}_val for every p != t

so checkpoints are selected on held-out subjects of the training parts, never on the test part.
"""

from __future__ import annotations

from collections.abc import Mapping

NUM_PARTS = 3
PARTS: tuple[int, ...] = (1, 2, 3)
FOLDS: tuple[int, ...] = (1, 2, 3)
LOGICAL_SPLITS: tuple[str, ...] = ('train', 'validation', 'test')
PHYSICAL_SPLITS: tuple[str, ...] = tuple(
    f'part{p}{suffix}' for p in PARTS for suffix in ('', '_val'))


def train_part(p: int) -> str:
  return f'part{p}'


def val_part(p: int) -> str:
  return f'part{p}_val'


def _check_fold(fold, test_part_of_fold: Mapping[int, int]) -> int:
  if sorted(test_part_of_fold) != list(FOLDS) or sorted(test_part_of_fold.values()) != list(PARTS):
    raise ValueError(f'test_part_of_fold must map folds {FOLDS} one-to-one onto parts {PARTS}; '
                     f'got {dict(test_part_of_fold)}.')
  if isinstance(fold, bool) or not isinstance(fold, int) or fold not in test_part_of_fold:
    raise ValueError(f'config.data.fold must be one of {FOLDS}; got {fold!r}.')
  return test_part_of_fold[fold]


def split_parts(fold: int, split: str, test_part_of_fold: Mapping[int, int]) -> list[str]:
  """The physical splits that make up a logical split of a fold (see module docstring)."""
  t = _check_fold(fold, test_part_of_fold)
  if split not in LOGICAL_SPLITS:
    raise ValueError(f'split must be one of {LOGICAL_SPLITS}; got {split!r}.')
  if split == 'test':
    return [train_part(t), val_part(t)]
  others = [p for p in PARTS if p != t]
  if split == 'train':
    return [train_part(p) for p in others]
  return [val_part(p) for p in others]


def resolve_split(fold: int, split: str, test_part_of_fold: Mapping[int, int]) -> str:
  """A tfds split string such as 'part2+part3' for logical `split` of `fold`."""
  return '+'.join(split_parts(fold, split, test_part_of_fold))
