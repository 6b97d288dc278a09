"""MGRR-Net: multi-level graph relational reasoning with joint face alignment (Ge et al., 2024).

Paper: ``mgrr_net.md``. Facts the paper leaves open and faujax's readings:
``docs/reference/model_details.md`` ("MGRR-Net", "JAA-Net stem", "MGRR-Net prior", "MGRR-Net
training defaults").

  image (B, S, S, 3), S = 176
    -> JAA-Net stem (two HMR layers, ``faujax.backbones.jaanet``)          O_G (B, s, s, 64), s = S/4
    -> face-alignment branch on O_G                                        landmarks S^ (B, M, 2)
    -> JAA-Net AU centres of S^ (two per AU) -> bilinear O_G patches       v_i (B, N, 2, p, p, 64)
    -> K relational layers (``parts.mgrr_layer``): region graph D_G (eq. 5), channel / pixel
       MH-GAT (eq. 3-4), hierarchical GFC (eq. 6-8)                        v_i^K
    -> local head: per-AU linear classifier on v_i^K                      au_logits/local (B, N)
    -> integrated head: MLP on [mean_patch(v_1^K) .. mean_patch(v_N^K), S^ / S]
                                                                          au_logits/integrated
  au_probs = (sigmoid(local) + sigmoid(integrated)) / 2 (sec. 4.2, the final prediction).

Losses (``faujax.tasks``): the configured AU loss on every ``au_logits/<head>`` (the weighted BCE of
eq. 9: L_au + L_int) and ``config.loss.landmark_weight`` (lambda = 0.5) x eq. 10 on ``landmarks``
against ``batch['landmarks']`` (eq. 11). The patches are sampled at the *predicted* landmarks, so
the AU losses reach the alignment branch (``centres_from='ground_truth'`` samples at the given
landmarks instead, a diagnostic).

Ablations (``ABLATIONS``; MGRR-Net Table 6 columns, K = ``num_layers``, Table 7):
  baseline      no D_G, no global level: the heads read the stem's AU patches
  dg            + D_G with the prior adjacency (eq. 1-2)
  dg_random     + D_G with a random U(0, 1) initial adjacency (sec. 4.5.1)
  dg+og         + O_G                      dg+cg+pg   + C_G + P_G
  dg+og+cg      + O_G + C_G                dg+og+pg   + O_G + P_G
  full          D_G + O_G + C_G + P_G, hierarchical gated fusion (the paper's model)
  full_ungated  the same with every gate beta = 1/2 (faujax's ablation of the gate)
"""

from __future__ import annotations

from typing import Any, Mapping

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faujax import model_state
from faujax import relations
from faujax.backbones.jaanet import torch_linear
from faujax.config_schema import frozen_mapping
from faujax.geometry import au_centres as au_centres_lib
from faujax.models import trunk as trunk_lib
from faujax.layers import torch_init
from faujax.models.parts import mgrr_global
from faujax.models.parts import mgrr_layer
from faujax.models.parts import mgrr_patches

ADJACENCY_INITS = ('prior', 'random')
LANDMARK_INITS = ('mean_face', 'zero')
CENTRE_SOURCES = ('predicted', 'ground_truth')


def _row(dg: bool, og: bool, cg: bool, pg: bool, adjacency: str = 'prior',
         fusion: str = 'gated') -> dict[str, Any]:
  return {'model.use_region_graph': dg, 'model.use_global': og, 'model.use_channel': cg,
          'model.use_pixel': pg, 'model.adjacency_init': adjacency, 'model.fusion': fusion}


# The auxiliary loss terms this model trains with (``faujax.tasks.AUXILIARY_TERMS``).
LOSS_TERMS = ('landmark',)

# The evaluators this model comes with (``faujax.evaluators``).
EVALUATORS = ('faujax.evaluators.landmark_error',)

# MGRR-Net Table 6 (columns 1-7) plus the random-initialised graph (sec. 4.5.1) and the ungated
# fusion: name -> the config keys each row sets.
ABLATIONS: dict[str, dict[str, Any]] = {
    'baseline': _row(False, False, False, False),
    'dg': _row(True, False, False, False),
    'dg_random': _row(True, False, False, False, adjacency='random'),
    'dg+og': _row(True, True, False, False),
    'dg+cg+pg': _row(True, False, True, True),
    'dg+og+cg': _row(True, True, True, False),
    'dg+og+pg': _row(True, True, False, True),
    'full': _row(True, True, True, True),
    'full_ungated': _row(True, True, True, True, fusion='mean'),
}


def prior_adjacency(info: Any) -> np.ndarray:
  """MGRR-Net eq. 1-2 on the fold's training AU labels (``info.train_labels``): (N, N)."""
  train = getattr(info, 'train_labels', None) or {}
  if 'au' not in train:
    raise ValueError("config.model.adjacency_init='prior' needs the training AU labels "
                     "(info.train_labels['au']) for MGRR-Net eq. 1-2; this dataset info has "
                     f'{sorted(train)}. Use adjacency_init=\'random\' or an AU dataset.')
  labels = np.asarray(train['au'], np.float64)
  mask = train.get('au_mask')
  if labels.ndim != 2 or labels.shape[1] != info.num_labels:
    raise ValueError(f"info.train_labels['au'] has shape {labels.shape}; expected (n, "
                     f'{info.num_labels}) (one column per AU of the label space).')
  return relations.mgrr_prior(labels, None if mask is None else np.asarray(mask))


def initial_adjacency(constants: Mapping[str, np.ndarray], num_labels: int, adjacency_init: str,
                      key: jax.Array) -> jax.Array:
  """A^k at initialisation: the prior of eq. 1-2 ('prior', the constant ``prior_adjacency`` of
  ``MGRRNet.prepare``) or U(0, 1) entries ('random', sec. 4.5.1); (N, N) float32."""
  n = int(num_labels)
  if adjacency_init == 'prior':
    prior = constants.get('prior_adjacency')
    if prior is None or np.shape(prior) != (n, n):
      raise ValueError(f"config.model.adjacency_init='prior' needs the constant prior_adjacency "
                       f'({n}, {n}) (MGRRNet.prepare); got {np.shape(prior)}.')
    return jnp.asarray(prior, jnp.float32)
  return jax.random.uniform(key, (n, n), jnp.float32)


class MGRRNet(nnx.Module):
  """The MGRR-Net AU detector with joint face alignment (see the module docstring).

  Args:
    info: an AU label space: ``aus`` (the AU numbers, for the JAA-Net centres), ``num_labels``
      N, ``num_landmarks`` M (49 BP4D / DISFA lists, 66 DISFA, 68 synthetic).
    constants: ``prepare``'s ``prior_adjacency`` (N, N), eq. 1-2 on the fold's training labels
      (with ``adjacency_init='prior'``): the initial A^k, kept with the run for the figures.
    backbone: ``config.model.backbone``, the JAA-Net stem (``jaanet_stem``); its ``input_size``
      is S. Its ``num_landmarks`` is set to the dataset's M (the alignment targets come from the
      data), whatever the config says.
    num_layers: K relational layers (2; Table 7 sweeps 1-3).
    use_region_graph, use_global, use_channel, use_pixel: D_G, O_G, C_G, P_G (Table 6).
    adjacency_init: 'prior' (eq. 1-2 on the training labels) or 'random' (U(0, 1)).
    fusion: 'gated' (GFC, eq. 7-8) or 'mean' (beta = 1/2).
    gfc_scale: every GFC output times this, i.e. eq. 7's l2-normalised maps have norm
      ``gfc_scale`` per position (1 = the paper; sqrt(c) gives per-element RMS ~1, a faujax
      deviation for short schedules, docs/mgrr_net_synthetic.md).
    hidden_dim: D of the MH-GATs (1024); num_heads: L (8).
    patch_size: p, side of each AU patch in O_G cells (8 at s = 44, i.e. 32 px of a 176 px face).
    integrated_dim: width of the integrated classifier's hidden layer (512).
    landmark_init: 'mean_face' (the alignment head predicts a pixel offset from faujax's mean
      face) or 'zero' (raw pixel coordinates, JAA-Net's head).
    centres_from: 'predicted' (the paper) or 'ground_truth' (``batch['landmarks']``).
    au_centre_rules: 'jaanet' (the paper's, via JAA-Net) or 'eacnet' centre rules.
    init: 'torch' (sec. 4.2, "the default initializer of PyTorch": every layer as torch's
      ``nn.Linear`` / ``nn.Conv2d`` / ``nn.ConvTranspose2d`` defaults, ``faujax.layers.torch_init``)
      or 'glorot' (faujax's earlier draw: Glorot-uniform W_i, U_q, U_k, U_v, U_c and GFC kernels,
      Flax's default deconvolution); the stem, the 3 x 3 reductions and the heads are torch's in
      both (docs/reference/model_details.md, "MGRR-Net", initialisation).
    dtype: compute dtype; parameters float32.
    rngs: initialisation.
  """

  def __init__(self, info: Any, *, constants: Mapping[str, np.ndarray] = frozen_mapping({}),
               backbone: Mapping[str, Any] = frozen_mapping({'name': 'jaanet_stem'}),
               num_layers: int = 2, use_region_graph: bool = True, use_global: bool = True,
               use_channel: bool = True, use_pixel: bool = True, adjacency_init: str = 'prior',
               fusion: str = 'gated', gfc_scale: float = 1.0, hidden_dim: int = 1024,
               num_heads: int = 8,
               patch_size: int = 8, integrated_dim: int = 512,
               landmark_init: str = 'mean_face', centres_from: str = 'predicted',
               au_centre_rules: str = 'jaanet', init: str = 'torch', dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    if getattr(info, 'task', 'au') != 'au':
      raise ValueError(f"config.model.name='mgrr_net' is an AU model; the dataset's task is "
                       f'{info.task!r}.')
    spec = dict(backbone)
    _validate(info, spec, num_layers=num_layers, adjacency_init=adjacency_init,
              fusion=fusion, hidden_dim=hidden_dim, num_heads=num_heads, patch_size=patch_size,
              integrated_dim=integrated_dim, landmark_init=landmark_init,
              centres_from=centres_from, au_centre_rules=au_centre_rules)
    mgrr_global.check_init(init)
    n = int(info.num_labels)
    m = int(info.num_landmarks)
    self.num_labels = n
    self.num_landmarks = m
    self.aus = tuple(int(a) for a in info.aus)
    self.rules = au_centre_rules
    self.centres_from = centres_from
    self.patch_size = patch_size
    self.dtype = dtype
    adjacency = (initial_adjacency(constants, n, adjacency_init, rngs.params())
                 if use_region_graph else None)
    self.prior_adjacency = (model_state.Constant(jnp.asarray(constants['prior_adjacency']))
                            if 'prior_adjacency' in constants else None)
    # The alignment head predicts the dataset's landmarks (the targets of eq. 10).
    self.backbone = trunk_lib.build({**spec, 'num_landmarks': m}, dtype=dtype, rngs=rngs)
    self.image_size = int(self.backbone.input_size)
    c = int(self.backbone.num_features)
    self.side = self.image_size // 2**len(self.backbone.widths)
    self.landmark_offset = (mgrr_patches.mean_face_landmarks(m, self.image_size)
                            if landmark_init == 'mean_face' else None)

    self.layers = nnx.List([
        mgrr_layer.RelationalLayer(
            n, c, self.side, patch_size=patch_size,
            # A copy per layer: each layer trains its own A^k (and buffers must not be shared).
            adjacency=None if adjacency is None else jnp.array(adjacency), use_global=use_global,
            use_channel=use_channel, use_pixel=use_pixel, fusion=fusion, gfc_scale=gfc_scale,
            hidden_dim=hidden_dim,
            num_heads=num_heads, init=init, dtype=dtype, rngs=rngs)
        for _ in range(num_layers)])
    # Local head: one linear classifier per AU on its flattened patch map (eq. 9), each a torch
    # nn.Linear(flat, 1) with its default initialisation.
    flat = 2 * patch_size * patch_size * c
    self.local_kernel = nnx.Param(torch_init.uniform(rngs.params(), (n, flat), flat))
    self.local_bias = nnx.Param(torch_init.uniform(rngs.params(), (n,), flat))
    # Integrated head (L_int): every AU's refined feature and the alignment output.
    self.integrated_hidden = torch_linear(n * c + 2 * m, integrated_dim, dtype=dtype, rngs=rngs)
    self.integrated_out = torch_linear(integrated_dim, n, dtype=dtype, rngs=rngs)

  @staticmethod
  def prepare(info: Any, *, use_region_graph: bool = True,
              adjacency_init: str = 'prior') -> dict[str, np.ndarray]:
    """The constant ``prior_adjacency`` (eq. 1-2 on the training AU labels) when D_G starts from
    the prior; none otherwise."""
    if use_region_graph and adjacency_init == 'prior':
      return {'prior_adjacency': prior_adjacency(info).astype(np.float32)}
    return {}

  def predict_landmarks(self, raw: jax.Array) -> jax.Array:
    """The alignment branch's (B, 2M) interleaved output -> (B, M, 2) input pixels."""
    lm = raw.reshape(raw.shape[0], self.num_landmarks, 2).astype(jnp.float32)
    if self.landmark_offset is not None:
      lm = lm + jnp.asarray(self.landmark_offset)
    return lm

  def __call__(self, batch: dict[str, jax.Array], *, train: bool,
               rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
    images = batch['image']
    chex.assert_rank(images, 4)
    chex.assert_type(images, float)
    b = images.shape[0]
    o_g, inter = self.backbone(images, train=train, return_intermediates=True)
    chex.assert_shape(o_g, (b, self.side, self.side, None))
    landmarks = self.predict_landmarks(inter['landmarks'])          # (B, M, 2)
    if self.centres_from == 'predicted':
      source = landmarks
    else:
      source = jnp.asarray(batch['landmarks'], jnp.float32)
      chex.assert_shape(source, (b, self.num_landmarks, 2))
    centres = mgrr_patches.au_patch_centres(source, self.aus, image_size=self.image_size,
                                            map_size=self.side, rules=self.rules)
    v = mgrr_patches.sample_patches(o_g, centres, self.patch_size)  # (B, N, 2, p, p, c)
    for layer in self.layers:
      v = layer(v, o_g, centres, train=train)
    flat = v.reshape(b, self.num_labels, -1)
    local = (jnp.einsum('bnf,nf->bn', flat, self.local_kernel[...].astype(flat.dtype))
             + self.local_bias[...].astype(flat.dtype))
    pooled = v.mean(axis=(2, 3, 4)).reshape(b, -1)                  # (B, N c)
    align = (landmarks / self.image_size - 0.5).reshape(b, -1).astype(pooled.dtype)
    hidden = jax.nn.relu(self.integrated_hidden(jnp.concatenate([pooled, align], axis=-1)))
    integrated = self.integrated_out(hidden)
    local = local.astype(jnp.float32)
    integrated = integrated.astype(jnp.float32)
    chex.assert_shape([local, integrated], (b, self.num_labels))
    probs = (jax.nn.sigmoid(local) + jax.nn.sigmoid(integrated)) / 2.0
    return {'au_logits/local': local, 'au_logits/integrated': integrated, 'au_probs': probs,
            'landmarks': landmarks}


def _validate(info: Any, spec: dict[str, Any], *, num_layers: int, adjacency_init: str,
              fusion: str, hidden_dim: int, num_heads: int, patch_size: int, integrated_dim: int,
              landmark_init: str, centres_from: str, au_centre_rules: str) -> None:
  """Raises ValueError naming the config key (or dataset field) of an inconsistent setting."""
  if int(info.num_labels) < 1:
    raise ValueError(f'MGRR-Net needs at least one AU; the dataset has {info.num_labels}.')
  if spec.get('name') != 'jaanet_stem':
    raise ValueError(f"config.model.backbone.name={spec.get('name')!r}; MGRR-Net needs the "
                     "JAA-Net stem and its face-alignment branch, 'jaanet_stem'.")
  if not spec.get('with_landmarks', True):
    raise ValueError('config.model.backbone.with_landmarks=False; MGRR-Net predicts the '
                     'landmarks its AU patches are taken at (keep it True).')
  m = int(getattr(info, 'num_landmarks', 0))
  if m not in (49, 66, 68):
    raise ValueError(f'MGRR-Net trains face alignment: the dataset must carry 49, 66 or 68 '
                     f'landmarks per face (info.num_landmarks), got {m}.')
  aus = tuple(getattr(info, 'aus', ()))
  if len(aus) != int(info.num_labels):
    raise ValueError(f'info.aus={aus} does not name the {info.num_labels} AU columns; MGRR-Net '
                     'needs the AU numbers for the JAA-Net centres.')
  au_centres_lib.au_regions(aus, au_centre_rules)  # raises for an unknown AU / rule set
  for key, value in (('num_layers', num_layers), ('hidden_dim', hidden_dim),
                     ('num_heads', num_heads), ('patch_size', patch_size),
                     ('integrated_dim', integrated_dim)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f'config.model.{key}={value!r}; expected a positive int.')
  if hidden_dim % num_heads:
    raise ValueError(f'config.model.hidden_dim={hidden_dim} must be divisible by '
                     f'config.model.num_heads={num_heads} (d = D / L, eq. 4).')
  for key, value, allowed in (('adjacency_init', adjacency_init, ADJACENCY_INITS),
                              ('fusion', fusion, mgrr_layer.FUSIONS),
                              ('landmark_init', landmark_init, LANDMARK_INITS),
                              ('centres_from', centres_from, CENTRE_SOURCES)):
    if value not in allowed:
      raise ValueError(f'config.model.{key}={value!r}; expected one of {allowed}.')
