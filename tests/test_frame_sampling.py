"""AU-GCN's per-AU, per-video frame sampling (sec. 4.1; faujax.data.frame_sampling)."""

from __future__ import annotations

import numpy as np
import pytest

from faujax import config_base
from faujax import config_schema
from faujax.data import dataset_info
from faujax.data import frame_sampling

POSITIVES, NEGATIVES = 4, 6
VIDEO_SIZES = (50, 7, 30)  # the second video has fewer frames than asked


def _sampler(seed: int = 0) -> frame_sampling.FrameSampler:
  rng = np.random.default_rng(0)
  video = np.repeat(np.arange(len(VIDEO_SIZES)), VIDEO_SIZES)
  n = video.size
  au = (rng.random((n, 3)) < 0.3).astype(np.float32)
  au[video == 2, 1] = 0.0                            # video 2 never shows AU column 1
  mask = (rng.random((n, 3)) < 0.9).astype(np.float32)
  return frame_sampling.FrameSampler(au=au, au_mask=mask, video=video, positives=POSITIVES,
                                     negatives=NEGATIVES, seed=seed)


def test_each_au_draws_its_count_per_video_or_all_frames_of_a_short_video():
  """Sec. 4.1: k positives and k' negatives per AU per video, among the frames where the AU is
  known and active / inactive; a video with fewer such frames gives all of them."""
  s = _sampler()
  draws = s.draws(0)
  assert set(draws) == {(c, v) for c in range(3) for v in (0, 1)}
  for (c, value), idx in draws.items():
    eligible = (s.au_mask[:, c] == 1) & (s.au[:, c] == value)
    assert eligible[idx].all() and np.array_equal(idx, np.unique(idx))
    for v in range(len(VIDEO_SIZES)):
      available = int(np.sum(eligible & (s.video == v)))
      chosen = int(np.sum(s.video[idx] == v))
      assert chosen == min(POSITIVES if value else NEGATIVES, available), (c, value, v)
  assert not np.any(s.video[draws[(1, 1)]] == 2)      # no positive to draw in video 2
  assert np.sum(s.video[draws[(0, 0)]] == 1) < NEGATIVES  # 7 frames: all its negatives
  union = np.zeros(s.num_frames, bool)
  for idx in draws.values():
    union[idx] = True
  np.testing.assert_array_equal(s.epoch_mask(0), union)   # each frame once
  assert 0 < union.sum() < s.num_frames


def test_an_epoch_is_a_pure_function_of_seed_and_epoch_and_epochs_differ():
  a, b = _sampler(seed=5), _sampler(seed=5)
  for epoch in (0, 3):
    for key, idx in a.draws(epoch).items():
      np.testing.assert_array_equal(idx, b.draws(epoch)[key])   # a resumed run draws the same
  np.testing.assert_array_equal(a.epoch_mask(7), b.epoch_mask(7))
  assert not np.array_equal(a.epoch_mask(0), a.epoch_mask(1))
  assert not np.array_equal(a.epoch_mask(0), _sampler(seed=6).epoch_mask(0))


def test_videos_are_image_directories_or_subjects():
  paths = [b'F001/T1/1.jpg', 'F001/T2/1.jpg', 'F001/T1/2.jpg', 'F002/T1/1.jpg']
  ids = frame_sampling.video_ids(paths, [0, 0, 0, 1])
  assert ids[0] == ids[2] and len(set(ids.tolist())) == 3
  np.testing.assert_array_equal(frame_sampling.video_ids(None, [3, 3, 1]), [3, 3, 1])


def test_bad_settings_are_errors_naming_the_key():
  s = _sampler()
  with pytest.raises(ValueError, match='positives'):
    frame_sampling.FrameSampler(au=s.au, au_mask=s.au_mask, video=s.video, positives=0,
                                negatives=1, seed=0)
  with pytest.raises(ValueError, match='epoch'):
    s.draws(-1)
  with pytest.raises(config_schema.ConfigError, match='config.data.sample_negative_frames'):
    dataset_info.as_data_config({'sample_positive_frames': 100})


@pytest.mark.parametrize('recipe,frames', [('au_gcn/bp4d.py', (100, 200)),
                                           ('au_gcn/disfa.py', (800, 1600))])
def test_au_gcn_recipes_sample_the_papers_frames(recipe, frames):
  data = config_base.repository_config(recipe).data
  assert (data.sample_positive_frames, data.sample_negative_frames) == frames
  assert config_base.get_config('au_gcn').data.sample_positive_frames == 0  # off by default
