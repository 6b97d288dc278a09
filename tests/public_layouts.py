"""The state-dict layouts of the authors' public code, written out (names and shapes).

Written from the public modules (CVI-SZU/ME-GraphAU ``model/*.py`` and ``OpenGraphAU/model``,
lkq52110/au-recognition ``model.py``, PanosAntoniadis/emotion-gcn ``models.py`` / ``gcn.py``),
so that the importer tests need neither that code nor timm. The ResNet and DenseNet trunks are
torchvision's layout (``faujax.tools.import_weights.torch_key_map``, itself tested against
torchvision's own state dicts).
"""

from __future__ import annotations

import math

import numpy as np

from faujax.tools import import_weights


# (embed_dim, depths, heads) of swin_transformer_tiny / small / base (window 7, patch 4, 224 px).
PUBLIC_SWIN = {'swin_tiny': (96, (2, 2, 6, 2), (3, 6, 12, 24)),
               'swin_small': (96, (2, 2, 18, 2), (3, 6, 12, 24)),
               'swin_base': (128, (2, 2, 18, 2), (4, 8, 16, 32))}


def swin_shapes(name):
  """``{key: shape}`` of the public ``SwinTransformer`` (``head = None``) at 224 px, window 7."""
  c0, depths, heads = PUBLIC_SWIN[name]
  out = {'patch_embed.proj.weight': (c0, 3, 4, 4), 'patch_embed.proj.bias': (c0,),
         'patch_embed.norm.weight': (c0,), 'patch_embed.norm.bias': (c0,)}
  for i, depth in enumerate(depths):
    dim, res = c0 * 2**i, 56 // 2**i
    window = min(7, res)
    for j in range(depth):
      p = f'layers.{i}.blocks.{j}.'
      out.update({
          p + 'norm1.weight': (dim,), p + 'norm1.bias': (dim,),
          p + 'attn.relative_position_bias_table': ((2 * window - 1)**2, heads[i]),
          p + 'attn.relative_position_index': (window**2, window**2),
          p + 'attn.qkv.weight': (3 * dim, dim), p + 'attn.qkv.bias': (3 * dim,),
          p + 'attn.proj.weight': (dim, dim), p + 'attn.proj.bias': (dim,),
          p + 'norm2.weight': (dim,), p + 'norm2.bias': (dim,),
          p + 'mlp.fc1.weight': (4 * dim, dim), p + 'mlp.fc1.bias': (4 * dim,),
          p + 'mlp.fc2.weight': (dim, 4 * dim), p + 'mlp.fc2.bias': (dim,)})
      if j % 2 == 1 and res > 7:  # shifted block: registered attn_mask buffer
        out[p + 'attn_mask'] = ((res // 7)**2, 49, 49)
    if i < len(depths) - 1:
      out.update({f'layers.{i}.downsample.reduction.weight': (2 * dim, 4 * dim),
                  f'layers.{i}.downsample.norm.weight': (4 * dim,),
                  f'layers.{i}.downsample.norm.bias': (4 * dim,)})
  out.update({'norm.weight': (8 * c0,), 'norm.bias': (8 * c0,)})
  return out


def mae_shapes():
  """``{key: shape}`` of ``pretrain_mae_base_patch16_224()`` (encoder only; no pos_embed key)."""
  out = {'encoder.patch_embed.proj.weight': (768, 3, 16, 16),
         'encoder.patch_embed.proj.bias': (768,)}
  for j in range(12):
    p = f'encoder.blocks.{j}.'
    out.update({
        p + 'norm1.weight': (768,), p + 'norm1.bias': (768,),
        p + 'attn.q_bias': (768,), p + 'attn.v_bias': (768,),
        p + 'attn.qkv.weight': (2304, 768),
        p + 'attn.proj.weight': (768, 768), p + 'attn.proj.bias': (768,),
        p + 'norm2.weight': (768,), p + 'norm2.bias': (768,),
        p + 'mlp.fc1.weight': (3072, 768), p + 'mlp.fc1.bias': (3072,),
        p + 'mlp.fc2.weight': (768, 3072), p + 'mlp.fc2.bias': (768,)})
  out.update({'encoder.norm.weight': (768,), 'encoder.norm.bias': (768,)})
  return out


def transformer_shapes(name):
  """``{key: shape}`` of the public transformer trunk faujax calls ``name``."""
  return mae_shapes() if name == 'mae_vit_base' else swin_shapes(name)


def torchvision_shapes(arch: str, prefix: str) -> dict[str, tuple[int, ...]]:
  """torchvision's state-dict layout of ``arch`` under ``prefix``, BatchNorm counters included."""
  out = {}
  for key, (_, _, shape) in import_weights.torch_key_map(arch).items():
    out[prefix + key] = shape
    if key.endswith('running_var'):
      out[prefix + key[:-len('running_var')] + 'num_batches_tracked'] = ()
  return out


def trunk_shapes(arch: str, prefix: str = 'backbone.') -> dict[str, tuple[int, ...]]:
  if arch in import_weights.TORCHVISION_ARCHS:
    return torchvision_shapes(arch, prefix)
  return {prefix + k: v for k, v in transformer_shapes(arch).items()}


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
  return {f'{prefix}.weight': (c,), f'{prefix}.bias': (c,), f'{prefix}.running_mean': (c,),
          f'{prefix}.running_var': (c,), f'{prefix}.num_batches_tracked': ()}


def _linear_block(prefix: str, c_in: int, c_out: int) -> dict[str, tuple[int, ...]]:
  """``model/basic_block.py`` ``LinearBlock``: ``fc`` Linear, ``bn`` BatchNorm1d."""
  return {f'{prefix}.fc.weight': (c_out, c_in), f'{prefix}.fc.bias': (c_out,),
          **_bn(f'{prefix}.bn', c_out)}


TRUNK_WIDTH = {'resnet18': 512, 'resnet50': 2048, 'resnet101': 2048, 'swin_tiny': 768,
               'swin_small': 768, 'swin_base': 1024, 'mae_vit_base': 768}


def me_graphau_shapes(stage: int, arch: str, n: int, *, opengraphau: bool = False,
                      sided: int = 0) -> dict[str, tuple[int, ...]]:
  """``MEFARG(...).state_dict()`` of ``model/ANFL.py`` (stage 1) or ``model/MEFL.py`` (stage 2),
  ME-GraphAU's or OpenGraphAU's (``main_class_linears``, ``main_sc`` / ``sub_sc``,
  ``gnn.graph_layers``, no ``edge_fc``)."""
  width = TRUNK_WIDTH[arch]
  c = width // (4 if arch.startswith('resnet') else 2)
  out = trunk_shapes(arch)
  out.update(_linear_block('global_linear', width, c))
  blocks = 'head.main_class_linears' if opengraphau else 'head.class_linears'
  for i in range(n):
    out.update(_linear_block(f'{blocks}.{i}', c, c))
  if opengraphau:
    out.update({'head.main_sc': (n, c), 'head.sub_sc': (sided, c)})
  else:
    out['head.sc'] = (n, c)
  if stage == 1:
    out.update({'head.gnn.U.weight': (c, c), 'head.gnn.U.bias': (c,), 'head.gnn.V.weight': (c, c),
                'head.gnn.V.bias': (c,), **_bn('head.gnn.bnv', n)})
    return out
  for attn in ('FAM', 'ARM'):
    out.update({f'head.edge_extractor.{attn}.linear_q.weight': (c // 2, c),
                f'head.edge_extractor.{attn}.linear_q.bias': (c // 2,),
                f'head.edge_extractor.{attn}.linear_k.weight': (c // 2, c),
                f'head.edge_extractor.{attn}.linear_k.bias': (c // 2,),
                f'head.edge_extractor.{attn}.linear_v.weight': (c, c),
                f'head.edge_extractor.{attn}.linear_v.bias': (c,)})
  out.update({'head.edge_extractor.edge_proj.weight': (c, c),
              'head.edge_extractor.edge_proj.bias': (c,), **_bn('head.edge_extractor.bn', n * n)})
  for layer in range(2):
    prefix, suffix = ((f'head.gnn.graph_layers.{layer}.', '') if opengraphau
                      else ('head.gnn.', str(layer + 1)))
    out.update({f'{prefix}{name}{suffix}.weight': (c, c) for name in 'UVABE'})
    out.update({**_bn(f'{prefix}bnv{suffix}', n), **_bn(f'{prefix}bne{suffix}', n * n)})
  if not opengraphau:
    out.update({'head.edge_fc.weight': (4, c), 'head.edge_fc.bias': (4,)})
  return out


def macg_shapes(n: int) -> dict[str, tuple[int, ...]]:
  """The public ``MACG(num_classes=n).state_dict()`` (``shared/reference/macg_checkpoint_format.md``)."""
  out = trunk_shapes('resnet50')
  out.update(_linear_block('global_linear', 2048, 512))
  out['head.sc'] = (n, 512)
  out.update({'head.gnn.U.weight': (512, 512), 'head.gnn.U.bias': (512,),
              'head.gnn.V.weight': (512, 512), 'head.gnn.V.bias': (512,),
              **_bn('head.gnn.bnv', n)})
  out.update(_linear_block('head.class_linear', 512, 512))
  for i in range(n):
    out.update(_linear_block(f'head.mafg.class_linears.{i}', 512, 512))
  out.update({'head.mafg.conv0.weight': (512, 1, 5, 5), 'head.mafg.conv0.bias': (512,)})
  for i, k in enumerate((7, 11, 21)):
    out.update({f'head.mafg.conv{i}_1.weight': (512, 1, 1, k), f'head.mafg.conv{i}_1.bias': (512,),
                f'head.mafg.conv{i}_2.weight': (512, 1, k, 1), f'head.mafg.conv{i}_2.bias': (512,)})
  out.update({'head.mafg.conv3.weight': (512, 512, 1, 1), 'head.mafg.conv3.bias': (512,)})
  out.update({'head.ccfg.conv1.weight': (64, 512, 1, 1), 'head.ccfg.conv1.bias': (64,),
              'head.ccfg.conv2.weight': (64, 512, 1, 1), 'head.ccfg.conv2.bias': (64,),
              'head.ccfg.conv3.weight': (512, 512, 1, 1), 'head.ccfg.conv3.bias': (512,),
              'head.ccfg.conv4.weight': (512, 64, 1, 1), 'head.ccfg.conv4.bias': (512,)})
  out.update(_linear_block('head.ccfg.class_linear', 512, 512))
  out.update(_linear_block('head.post_concat', 1024, 512))
  return out


def emotion_gcn_shapes() -> dict[str, tuple[int, ...]]:
  """The public ``Emotion_GCN().state_dict()``: DenseNet-121 ``features``, ``gc1`` / ``gc2``
  (``gcn.py``'s (in, out) weights, no bias) and the adjacency Parameter ``A``."""
  out = trunk_shapes('densenet121', '')  # torchvision's 'features.<layer>' keys
  out.update({'gc1.weight': (300, 512), 'gc2.weight': (512, 1024), 'A': (9, 9)})
  return out


def distinct_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
  """Float32 arrays whose values are all distinct across keys (consecutive float32 bit patterns
  from 1.0 upwards), ``num_batches_tracked`` counters int64."""
  base = np.int32(0x3F800000)
  out, offset = {}, 0
  for key, shape in shapes.items():
    if key.endswith('num_batches_tracked'):
      out[key] = np.asarray(7, np.int64)
      continue
    n = math.prod(shape)
    out[key] = (base + np.arange(offset, offset + n, dtype=np.int32)).view(np.float32).reshape(
        shape)
    offset += n
  return out
