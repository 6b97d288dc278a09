"""AU-GCN's training frames: a per-video, per-AU sample drawn anew each epoch (sec. 4.1).

AU-GCN sec. 4.1: "For each AU, we sampled 100 positive frames and 200 negative frames for each
video" on BP4D, and 800 positive and 1,600 negative frames "for each video" on DISFA (read per AU
as on BP4D, "to be consistent with the 8-video setting of BP4D"). faujax's rule
(``config.data.sample_positive_frames`` / ``sample_negative_frames``, ``FrameSampler``):

* a video is a frame's image directory (BP4D ``F001/T1``, DISFA ``SN001``), or its subject where
  the dataset stores no image path (the synthetic faces);
* for every AU and every training video, ``positives`` frames are drawn uniformly without
  replacement among the video's frames where the AU is known and active, and ``negatives``
  among those where it is known and inactive; a video with fewer such frames gives all of them
  (frames whose label is unknown are never drawn for that AU);
* the epoch trains on the union of the draws of every AU, each frame once, however many AUs drew
  it (so an epoch is at most positives + negatives frames per AU per video);
* the draws of epoch ``e`` are a pure function of (``seed``, ``e``) (numpy's generator seeded with
  the pair): a resumed run draws what the uninterrupted run drew, and every epoch a new sample.

The training loop's epochs (``config.train.num_epochs``, the schedules' ``*_epochs``) still count
``info.num_examples['train'] / batch_size`` steps; a sampled epoch is this module's pass.
docs/reference/model_details.md, "AU-GCN training".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


def video_ids(image_paths: Sequence[str | bytes] | None, subjects: Sequence[int]) -> np.ndarray:
  """(n,) int64 video index of each frame: its image path's directory, else its subject."""
  if image_paths is None:
    return np.asarray(subjects, np.int64).reshape(-1)
  dirs = [(p.decode() if isinstance(p, bytes) else str(p)).rpartition('/')[0]
          for p in image_paths]
  _, index = np.unique(np.asarray(dirs, dtype=object).astype(str), return_inverse=True)
  return index.astype(np.int64).reshape(-1)


def _first_per_group(groups: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
  """Positions (into ``groups``) of the ``k`` smallest ``keys`` of every group value."""
  order = np.lexsort((keys, groups))
  g = groups[order]
  starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
  rank = np.arange(g.size) - np.repeat(starts, np.diff(np.r_[starts, g.size]))
  return order[rank < k]


@dataclasses.dataclass(frozen=True)
class FrameSampler:
  """The per-epoch training frames of AU-GCN sec. 4.1 (see the module docstring).

  Attributes:
    au: (n, C) 0/1 AU occurrence of the training frames, in the split's stored order.
    au_mask: (n, C) 1 where the label is known.
    video: (n,) int video of each frame (``video_ids``).
    positives: frames drawn per AU per video among the AU's known positives (>= 1).
    negatives: the same among its known negatives (>= 1).
    seed: the run's seed (``config.seed``).
  """
  au: np.ndarray
  au_mask: np.ndarray
  video: np.ndarray
  positives: int
  negatives: int
  seed: int

  def __post_init__(self):
    au, mask, video = np.asarray(self.au), np.asarray(self.au_mask), np.asarray(self.video)
    if au.ndim != 2 or mask.shape != au.shape or video.shape != au.shape[:1]:
      raise ValueError(f'FrameSampler: au {au.shape}, au_mask {mask.shape} and video '
                       f'{video.shape} must be (n, C), (n, C) and (n,).')
    for key in ('positives', 'negatives'):
      value = getattr(self, key)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f'FrameSampler {key}={value!r}; expected an int >= 1.')

  @property
  def num_frames(self) -> int:
    return int(np.shape(self.au)[0])

  def draws(self, epoch: int) -> dict[tuple[int, int], np.ndarray]:
    """``{(AU column, 1 | 0): sorted frame indices}``: what epoch ``epoch`` draws for each AU's
    positives (1) and negatives (0), every video at once."""
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
      raise ValueError(f'epoch={epoch!r}; expected an int >= 0.')
    rng = np.random.default_rng([int(self.seed) % 2**64, int(epoch)])
    au = np.asarray(self.au) > 0.5
    known = np.asarray(self.au_mask) > 0.5
    video = np.asarray(self.video)
    out = {}
    for c in range(au.shape[1]):
      for value, k in ((1, self.positives), (0, self.negatives)):
        idx = np.flatnonzero(known[:, c] & (au[:, c] == bool(value)))
        keys = rng.random(idx.size)
        out[(c, value)] = np.sort(idx[_first_per_group(video[idx], keys, int(k))])
    return out

  def epoch_mask(self, epoch: int) -> np.ndarray:
    """(n,) bool: the frames epoch ``epoch`` trains on (the union of ``draws``)."""
    keep = np.zeros(self.num_frames, bool)
    for idx in self.draws(epoch).values():
      keep[idx] = True
    return keep
