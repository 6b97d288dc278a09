"""Converts a torchvision-format state dict into a faujax pretrained-backbone checkpoint.

Usage::

  python -m faujax.tools.import_weights --arch resnet50 --src resnet50.pth --out DIR

``--src`` is a ``.pth``/``.pt`` file read with ``torch.load(path, map_location='cpu',
weights_only=True)`` (a pickle that the weights-only unpickler refuses is never unpickled another
way) or a ``.safetensors`` file. Conversion: conv weights OIHW -> HWIO, linear weights transposed,
BatchNorm ``weight``/``bias`` -> params ``scale``/``bias``, ``running_mean``/``running_var`` ->
batch_stats ``mean``/``var``; torchvision's classifier (``fc.*`` / ``classifier.*``) and
``num_batches_tracked`` counters are skipped on purpose and reported. Any other missing, unexpected
or wrongly shaped tensor is an error that lists them. The result (orbax checkpoint + JSON, see
:mod:`faujax.backbones.pretrained`) is what ``config.pretrained_backbone`` points to.

torch (optional extra ``faujax[torch]``) is imported only inside :func:`load_state_dict`, and only
for ``.pth`` input.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re
import sys
from typing import Any, Mapping, Sequence

import numpy as np

from faujax.backbones.pretrained import (flatten_tree, listing, save_pretrained,
                                         unflatten_tree, variable_shapes)
from faujax.backbones.registry import TORCHVISION_ARCHS

# torchvision head tensors that a backbone has no place for (skipped on purpose).
_HEAD_KEYS = {
    'resnet': ('fc.weight', 'fc.bias'),
    'densenet': ('classifier.weight', 'classifier.bias'),
}
# Pre-0.4 torchvision DenseNet checkpoints name e.g. 'denselayer1.norm.1.weight'.
_LEGACY_DENSENET = re.compile(
    r'^(.*denselayer\d+\.(?:norm|relu|conv))\.'
    r'((?:[12])\.(?:weight|bias|running_mean|running_var))$')


class StateDictMismatchError(ValueError):
  """The state dict does not fit the architecture: lists missing/unexpected/mis-shaped keys."""


class UnsafeCheckpointError(ValueError):
  """The ``.pth`` file holds objects that ``torch.load(weights_only=True)`` refuses to unpickle."""


def _family(arch: str) -> str:
  return 'densenet' if arch.startswith('densenet') else 'resnet'


def _torch_prefix(arch: str) -> str:
  return 'features.' if _family(arch) == 'densenet' else ''


def torch_key_map(arch: str) -> dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]]:
  """``{torch key: (collection, flax path, torch shape)}`` for every tensor the backbone needs.

  Derived from the NNX module's own variable tree (``faujax.model_state.variables`` layout, via
  ``faujax.backbones.pretrained.variable_shapes``), whose names mirror torchvision's.
  """
  if arch not in TORCHVISION_ARCHS:
    raise ValueError(f'--arch {arch!r}: torchvision weights exist only for '
                     f'{", ".join(TORCHVISION_ARCHS)}')
  prefix = _torch_prefix(arch)
  mapping: dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]] = {}
  for collection, tree in variable_shapes(arch).items():
    for path, leaf in flatten_tree(tree).items():
      shape = tuple(leaf.shape)
      module, name = '.'.join(path[:-1]), path[-1]
      if collection == 'params' and name == 'kernel' and len(shape) == 4:  # HWIO -> OIHW
        torch_name, torch_shape = 'weight', (shape[3], shape[2], shape[0], shape[1])
      elif collection == 'params' and name == 'kernel' and len(shape) == 2:  # (in,out)->(out,in)
        torch_name, torch_shape = 'weight', (shape[1], shape[0])
      elif collection == 'params' and name == 'scale':
        torch_name, torch_shape = 'weight', shape
      elif collection == 'params' and name == 'bias':
        torch_name, torch_shape = 'bias', shape
      elif collection == 'batch_stats' and name == 'mean':
        torch_name, torch_shape = 'running_mean', shape
      elif collection == 'batch_stats' and name == 'var':
        torch_name, torch_shape = 'running_var', shape
      else:
        raise AssertionError(f'no torch name for {collection}/{"/".join(path)} {shape}')
      mapping[f'{prefix}{module}.{torch_name}'] = (collection, path, torch_shape)
  return mapping


def to_flax(value: Any, collection: str, path: tuple[str, ...]) -> np.ndarray:
  """A torch tensor (or array) in the Flax layout, float32: conv kernels OIHW -> HWIO, linear
  kernels (out, in) -> (in, out), everything else as it is.

  Always a new array that owns its memory: ``np.asarray`` of a float32 torch tensor or numpy
  array is a view of it, so a later in-place update of the source (a torch optimiser step, a
  ``running_var`` update) would silently change the "converted" biases and BatchNorm statistics.
  """
  value = np.asarray(value, np.float32)
  if collection == 'params' and path[-1] == 'kernel':
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)
    elif value.ndim == 2:
      value = value.T
  return np.array(value, np.float32, order='C', copy=True)


def _normalise_keys(arch: str, state_dict: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
  """Strips a ``module.`` (DataParallel) prefix and renames legacy DenseNet keys; returns notes."""
  notes = []
  keys = list(state_dict)
  sd = dict(state_dict)
  if keys and all(k.startswith('module.') for k in keys):
    sd = {k[len('module.'):]: v for k, v in sd.items()}
    notes.append("stripped the 'module.' prefix (DataParallel checkpoint)")
  if _family(arch) == 'densenet':
    renamed = {}
    for k, v in sd.items():
      m = _LEGACY_DENSENET.match(k)
      renamed[m.group(1) + m.group(2) if m else k] = v
    if set(renamed) != set(sd):
      notes.append("renamed legacy DenseNet keys ('norm.1' -> 'norm1')")
    sd = renamed
  return sd, notes


def _guess_arch(keys: set[str], shapes: Mapping[str, tuple[int, ...]]) -> str | None:
  """The torchvision architecture whose expected keys and shapes all appear in ``keys``."""
  for candidate in TORCHVISION_ARCHS:
    expected = torch_key_map(candidate)
    if all(k in keys and shapes[k] == s for k, (_, _, s) in expected.items()):
      if not keys - set(expected) - set(_HEAD_KEYS[_family(candidate)]) - {
          k for k in keys if k.endswith('num_batches_tracked')}:
        return candidate
  return None


def convert_state_dict(arch: str, state_dict: Mapping[str, Any]
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
  """Converts a torchvision state dict (numpy-convertible values) to Flax variables.

  Args:
    arch: one of ``TORCHVISION_ARCHS``.
    state_dict: ``{torch key: array}``, e.g. ``{'conv1.weight': (64, 3, 7, 7), ...}``.

  Returns:
    ``({'params': ..., 'batch_stats': ...}, report)`` with float32 numpy leaves; ``report`` has
    ``'torch_keys'`` (all input keys), ``'converted'`` (count), ``'skipped_keys'``
    (``{key: reason}``) and ``'notes'``.

  Raises:
    StateDictMismatchError: missing / unexpected keys or wrong shapes (all listed, with expected
      vs got torch shapes, and a guess of the architecture the file actually holds).
  """
  mapping = torch_key_map(arch)
  sd, notes = _normalise_keys(arch, state_dict)
  shapes = {k: tuple(np.shape(v)) for k, v in sd.items()}
  skipped: dict[str, str] = {}
  for k in sd:
    if k.endswith('num_batches_tracked'):
      skipped[k] = 'BatchNorm step counter (not used by Flax BatchNorm)'
    elif k in _HEAD_KEYS[_family(arch)] and k not in mapping:
      skipped[k] = 'ImageNet classifier head (faujax backbones have no head)'
  missing = sorted(f'{k} {s}' for k, (_, _, s) in mapping.items() if k not in sd)
  unexpected = sorted(f'{k} {shapes[k]}' for k in sd if k not in mapping and k not in skipped)
  wrong = sorted(f'{k}: expected {s}, got {shapes[k]}'
                 for k, (_, _, s) in mapping.items() if k in sd and shapes[k] != s)
  if missing or unexpected or wrong:
    guess = _guess_arch(set(sd), shapes)
    hint = (f'  the file looks like a {guess!r} state dict: pass --arch {guess}\n'
            if guess and guess != arch else '')
    raise StateDictMismatchError(
        f'state dict does not match --arch {arch!r} (torchvision layout):\n' + hint + listing(
            [('missing keys', missing), ('unexpected keys', unexpected),
             ('wrong shapes', wrong)]))
  flat: dict[tuple[str, ...], np.ndarray] = {}
  for key, (collection, path, _) in mapping.items():
    flat[(collection,) + path] = to_flax(sd[key], collection, path)
  tree = unflatten_tree(flat)
  variables = {'params': tree.get('params', {}), 'batch_stats': tree.get('batch_stats', {})}
  report = {'torch_keys': list(state_dict), 'converted': len(mapping), 'skipped_keys': skipped,
            'notes': notes}
  return variables, report


def _tensor_to_numpy(value: Any) -> np.ndarray:
  """A numpy copy of a torch tensor (``Tensor.numpy()`` shares the tensor's memory: a later
  in-place torch update would change the "converted" array)."""
  import torch  # pylint: disable=g-import-not-at-top

  if value.dtype in (torch.bfloat16, torch.float16):
    value = value.float()
  return np.array(value.detach().cpu().numpy(), copy=True)


# Where training scripts put the weights in the dict they save (the public ME-GraphAU / MACG
# scripts: 'state_dict'; Emotion-GCN's main.py: 'model_state_dict').
STATE_DICT_WRAPPERS = ('state_dict', 'model_state_dict', 'model')


def load_state_dict(src: str) -> dict[str, np.ndarray]:
  """The state dict of ``src`` (``read_checkpoint`` without the skipped entries)."""
  return read_checkpoint(src)[0]


def read_checkpoint(src: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """Reads ``src`` (``.pth``/``.pt``/``.bin`` via torch weights-only, or ``.safetensors``).

  A training script's checkpoint dict is unwrapped: the weights under one of
  ``STATE_DICT_WRAPPERS``; its other entries (the optimiser state, the epoch) are returned as
  ``{name: what it is}``, not read further.

  Returns:
    ``(state dict of numpy copies, skipped top-level entries)``.

  Raises:
    ValueError: file missing, unknown suffix, not a mapping of tensors, or torch/safetensors absent.
    UnsafeCheckpointError: the weights-only unpickler refused the file.
  """
  if not os.path.isfile(src):
    raise ValueError(f'--src {src!r}: no such file')
  suffix = os.path.splitext(src)[1].lower()
  if suffix == '.safetensors':
    try:
      from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ValueError('reading .safetensors needs the safetensors package: '
                       "pip install 'faujax[torch]'") from e
    try:
      return dict(load_file(src)), {}
    except Exception as e:  # safetensors raises its own SafetensorError / TypeError for bf16.
      if 'bfloat16' in str(e) or 'bf16' in str(e).lower():
        # numpy has no bfloat16: go through torch, still without any pickle.
        from safetensors.torch import load_file as load_torch  # pylint: disable=g-import-not-at-top
        return {k: _tensor_to_numpy(v) for k, v in load_torch(src).items()}, {}
      raise ValueError(f'--src {src!r}: not a readable safetensors file: {e}') from e
  if suffix not in ('.pth', '.pt', '.bin', '.ckpt'):
    raise ValueError(f'--src {src!r}: expected a .pth/.pt/.bin/.ckpt (torch) or .safetensors file')
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ValueError("reading .pth files needs PyTorch: pip install 'faujax[torch]'") from e
  try:
    obj = torch.load(src, map_location='cpu', weights_only=True)
  except pickle.UnpicklingError as e:
    raise UnsafeCheckpointError(
        f'--src {src!r}: torch.load(weights_only=True) refused to unpickle this file; it contains '
        'Python objects other than tensors. faujax never unpickles it another way: re-save the '
        "plain state dict (torch.save(model.state_dict(), path)) or use .safetensors.\n"
        f'  torch said: {str(e).splitlines()[0] if str(e) else type(e).__name__}') from None
  except RuntimeError as e:
    raise ValueError(f'--src {src!r}: torch could not read this file: {e}') from None
  skipped: dict[str, str] = {}
  if isinstance(obj, Mapping):
    for wrapper in STATE_DICT_WRAPPERS:
      if wrapper in obj and isinstance(obj[wrapper], Mapping):
        skipped = {str(k): _describe_entry(k, v) for k, v in obj.items() if k != wrapper}
        obj = obj[wrapper]
        break
  if not isinstance(obj, Mapping):
    raise ValueError(f'--src {src!r}: expected a state dict (mapping of names to tensors), '
                     f'got {type(obj).__name__}')
  bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
  if bad:
    raise ValueError(f'--src {src!r}: entries that are not tensors: {", ".join(bad[:20])}')
  return {str(k): _tensor_to_numpy(v) for k, v in obj.items()}, skipped


def read_array(src: str) -> np.ndarray:
  """One array saved with ``torch.save`` (a tensor, or a numpy array: numpy's own types are the
  only globals the weights-only unpickler is allowed), or a ``.npy`` file; no other code runs.

  Raises:
    ValueError / UnsafeCheckpointError: naming ``src``.
  """
  if src.endswith('.npy'):
    try:
      return np.load(src, allow_pickle=False)
    except (OSError, ValueError) as e:
      raise ValueError(f'{src}: not a readable .npy array ({e}).') from None
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ValueError("reading a torch-saved array needs PyTorch: pip install 'faujax[torch]'"
                     ) from e
  allowed = [np.ndarray, np.dtype, np._core.multiarray._reconstruct]  # pylint: disable=protected-access
  allowed += [type(np.dtype(t)) for t in ('float32', 'float64', 'float16')]
  try:
    with torch.serialization.safe_globals(allowed):
      obj = torch.load(src, map_location='cpu', weights_only=True)
  except pickle.UnpicklingError as e:
    raise UnsafeCheckpointError(
        f'{src}: torch.load(weights_only=True) refused to unpickle it (it holds Python objects '
        f'other than an array); faujax never unpickles it another way. '
        f'torch said: {str(e).splitlines()[0] if str(e) else type(e).__name__}') from None
  except (RuntimeError, OSError) as e:
    raise ValueError(f'{src}: torch could not read it ({e}).') from None
  if isinstance(obj, torch.Tensor):
    return _tensor_to_numpy(obj)
  if isinstance(obj, np.ndarray):
    return np.array(obj, copy=True)
  raise ValueError(f'{src}: holds a {type(obj).__name__}, not one array.')


def _describe_entry(name: Any, value: Any) -> str:
  """What a training script's non-weight entry is (for the one-line skip summary)."""
  if isinstance(value, Mapping) and 'param_groups' in value:
    return f'optimiser state ({len(value.get("state", {}))} tensors\' state)'
  if isinstance(value, (int, float)):
    return f'{name} {value}'
  return type(value).__name__


def sha256(path: str) -> str:
  """The file's SHA-256 as hex, read in 1 MiB chunks."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def import_weights(arch: str, src: str, out: str, *, overwrite: bool = False) -> dict[str, Any]:
  """Reads ``src``, converts it for ``arch``, writes the checkpoint to ``out``; returns a report."""
  state_dict = load_state_dict(src)
  variables, report = convert_state_dict(arch, state_dict)
  meta = {'source': os.path.abspath(src), 'source_sha256': sha256(src), **report}
  save_pretrained(out, arch, variables, meta, overwrite=overwrite)
  return report


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m faujax.tools.import_weights',
      description='Convert torchvision ImageNet weights into a faujax backbone checkpoint.')
  parser.add_argument('--arch', required=True, choices=TORCHVISION_ARCHS)
  parser.add_argument('--src', required=True, help='.pth/.pt (state dict) or .safetensors file')
  parser.add_argument('--out', required=True, help='output directory (config.pretrained_backbone)')
  parser.add_argument('--overwrite', action='store_true', help='replace an existing checkpoint')
  args = parser.parse_args(argv)
  try:
    report = import_weights(args.arch, args.src, args.out, overwrite=args.overwrite)
  except ValueError as e:
    print(f'import_weights: error: {e}', file=sys.stderr)
    return 1
  print(f'converted {report["converted"]} tensors for {args.arch} -> {os.path.abspath(args.out)}')
  for note in report['notes']:
    print(f'note: {note}')
  if report['skipped_keys']:
    print(f'skipped on purpose ({len(report["skipped_keys"])}):')
    for k, why in report['skipped_keys'].items():
      if not k.endswith('num_batches_tracked'):
        print(f'  {k}: {why}')
    counters = sum(k.endswith('num_batches_tracked') for k in report['skipped_keys'])
    if counters:
      print(f'  {counters} x *.num_batches_tracked: BatchNorm step counters')
  return 0


if __name__ == '__main__':
  sys.exit(main())
