"""faujax.tasks: the AU task's loss over several classifier heads, against numpy."""

import jax.numpy as jnp
import numpy as np
import pytest

from faujax import tasks
from faujax.data import dataset_info

AUS = (1, 2, 4, 6)


def _info():
  return dataset_info.DatasetInfo(
      name='fake', builder_config='fake', task='au', label_names=[f'AU{a}' for a in AUS],
      num_labels=len(AUS), aus=AUS, num_examples={'train': 64, 'validation': 0, 'test': 0},
      image_size=40, num_landmarks=68, fold=1,
      train_occurrence_rates=np.array([0.3, 0.2, 0.25, 0.1], np.float32),
      class_counts=np.array([30, 20, 25, 10], np.int64))


def _weighted_bce(logits, labels, mask, w):
  p = 1 / (1 + np.exp(-logits))
  ll = labels * np.log(p) + (1 - labels) * np.log(1 - p)
  return -np.sum(mask * w * ll) / np.sum(mask)


def _batch(rng, b=6):
  return {'au': (rng.random((b, len(AUS))) < 0.4).astype(np.float32),
          'au_mask': (rng.random((b, len(AUS))) < 0.9).astype(np.float32),
          'landmarks': np.zeros((b, 68, 2), np.float32), 'valid': np.ones(b, np.float32)}


@pytest.mark.parametrize('name', ['bce', 'bce_dice'])
def test_every_au_logits_head_gets_the_loss_and_they_add_up(name):
  """MGRR-Net eq. 11: L_au (local heads) + L_int (integrated head), each the weighted BCE."""
  info = _info()
  task = tasks.build(info, tasks.LossConfig(name=name, weighted=True))
  rng = np.random.default_rng(0)
  batch = _batch(rng)
  t = task.targets({k: jnp.asarray(v) for k, v in batch.items()})
  local, integrated = (rng.normal(size=(6, len(AUS))).astype(np.float32) for _ in range(2))
  one, _ = task.loss({'au_logits': jnp.asarray(local)}, t)
  two, aux = task.loss({'au_logits/local': jnp.asarray(local),
                        'au_logits/integrated': jnp.asarray(integrated)}, t)
  single, _ = task.loss({'au_logits': jnp.asarray(integrated)}, t)
  np.testing.assert_allclose(two, one + single, rtol=1e-5)
  np.testing.assert_allclose(aux['au_loss/local'], one, rtol=1e-5)
  if name == 'bce':
    w = np.asarray(tasks.losses.occurrence_weights(info.train_occurrence_rates))
    np.testing.assert_allclose(one, _weighted_bce(local, batch['au'], batch['au_mask'], w),
                               rtol=1e-5)
  else:
    assert {'dice/local', 'dice/integrated'} <= set(aux)


def test_evaluation_reads_au_probs_when_the_model_gives_them():
  task = tasks.build(_info(), tasks.LossConfig())
  rng = np.random.default_rng(1)
  batch = _batch(rng)
  t = task.targets({k: jnp.asarray(v) for k, v in batch.items()})
  probs = rng.uniform(size=(6, len(AUS))).astype(np.float32)
  out = task.eval_outputs({'au_logits/local': jnp.zeros((6, len(AUS))),
                           'au_probs': jnp.asarray(probs)}, t)
  np.testing.assert_allclose(out[tasks.metrics_lib.AU_PROB], probs)


def test_a_model_without_logit_heads_is_a_clear_error():
  task = tasks.build(_info(), tasks.LossConfig(name='bce'))
  batch = _batch(np.random.default_rng(2))
  t = task.targets({k: jnp.asarray(v) for k, v in batch.items()})
  with pytest.raises(ValueError, match="au_logits/<head>"):
    task.loss({'au_probs': jnp.zeros((6, len(AUS)))}, t)


def test_a_weighted_term_without_its_model_output_is_a_clear_error():
  """ME-GraphAU stage 1 and OpenGraphAU have no edge logits: a nonzero edge weight names the key;
  at weight 0 the term is left out."""
  batch = _batch(np.random.default_rng(3))
  outputs = {'au_logits': jnp.zeros((6, len(AUS)))}
  task = tasks.build(_info(), tasks.LossConfig(name='bce', edge_weight=0.05), model_terms=('edge',))
  t = task.targets({k: jnp.asarray(v) for k, v in batch.items()})
  with pytest.raises(ValueError, match=r"config.loss.edge_weight = 0.05 .*\['edge_logits'\]"):
    task.loss(outputs, t)
  task = tasks.build(_info(), tasks.LossConfig(name='bce', edge_weight=0.0), model_terms=('edge',))
  _, aux = task.loss(outputs, t)
  assert 'edge_loss' not in aux


@pytest.mark.parametrize('spec', ['configs/me_graphau/bp4d.py:stage1',
                                  'configs/me_graphau/opengraphau.py:stage1',
                                  'configs/me_graphau/opengraphau.py:stage2'])
def test_configs_without_edge_logits_train_without_the_edge_loss(spec):
  from faujax import config_base
  config = config_base.load_config_file(spec)
  assert config.model.stage == 1 or not config.model.edge_classifier
  assert config.loss.edge_weight == 0.0
