"""The released-weight formats against the authors' own code (skipped unless it is checked out:
``tests/public_code.py``).

For every variant the public code can build with a faujax trunk: its model class with random
weights and random BatchNorm statistics, saved as its training script saves (``{'epoch',
'state_dict' / 'model_state_dict', 'optimizer'}``, DataParallel's ``module.`` prefix), imported
by ``faujax.tools.import_checkpoint``, then compared in eval mode
  * on the same 224 px input tensor (the model), and
  * on the user path: ``Predictor`` on the authors' aligned sample faces (``--faces cropped``)
    against the public test transform (``utils.image_test`` / Emotion-GCN's ``val_transforms``)
    and model.
Every difference must be <= 1e-5 of the largest output magnitude. ``PARITY_REPORT`` (a file
path, optional) receives one line per comparison for the closing table.

  FAUJAX_PUBLIC_CODE=/work/public /work/pvenv/bin/python -m pytest -q tests/test_released_parity.py
"""

import contextlib
import os

import numpy as np
import pytest

import public_code

torch = pytest.importorskip('torch')

RTOL = 1e-5
ME = 'ME-GraphAU'
OPEN = 'ME-GraphAU/OpenGraphAU'


def _report(name: str, got: np.ndarray, want: np.ndarray) -> float:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, (got.shape, want.shape)
  diff = float(np.max(np.abs(got - want)))
  rel = diff / max(float(np.max(np.abs(want))), 1e-12)
  path = os.environ.get('PARITY_REPORT')
  if path:
    with open(path, 'a', encoding='utf-8') as f:
      f.write(f'{name}\t{diff:.3g}\t{rel:.3g}\n')
  return rel


@contextlib.contextmanager
def _as_device_zero():
  """ME-GraphAU's ``model/MEFL.py`` ``GNN.forward`` binds its edge matrices only when
  ``x.get_device() >= 0`` (it runs on CUDA only): present the CPU tensors as device 0, and
  moving to an int device as a no-op, while the public model runs."""
  to, get_device = torch.Tensor.to, torch.Tensor.get_device
  torch.Tensor.get_device = lambda self: 0
  torch.Tensor.to = lambda self, *a, **k: self if a and isinstance(a[0], int) else to(self, *a,
                                                                                      **k)
  try:
    yield
  finally:
    torch.Tensor.to, torch.Tensor.get_device = to, get_device


def _randomise(module, seed: int, *inputs_shape, extra=()) -> None:
  """Random weights and BatchNorm statistics that keep activations O(1), as in a trained model:
  every parameter perturbed at random, then the statistics measured in train mode on random
  batches (cumulative average) and perturbed by up to 10 %. (With statistics that do not fit the
  activations, the cross-attentions' logits reach 1e4 and float32 rounding alone moves their
  softmax by more than 1e-5.)"""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in module.named_parameters():
      if name == 'A':  # Emotion-GCN's adjacency: kept as the file's
        continue
      p.add_(0.05 * (p.detach().abs().mean() + 1e-3) * torch.randn(p.shape, generator=g))
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]  # pylint: disable=protected-access
    for m in norms:
      m.reset_running_stats()
      m.momentum = None  # a cumulative average over the calibration batches
    module.train()
    with _as_device_zero():
      for _ in range(3):
        module(torch.randn(*inputs_shape, generator=g), *extra)
    for m in norms:
      m.running_mean.mul_(1 + 0.1 * (2 * torch.rand(m.running_mean.shape, generator=g) - 1))
      m.running_var.mul_(1 + 0.1 * (2 * torch.rand(m.running_var.shape, generator=g) - 1))
      m.momentum = 0.1
  module.eval()


def _save(module, path: str, wrapper: str = 'state_dict') -> None:
  """As the public training scripts save: DataParallel's keys, the optimiser, the epoch."""
  sd = {f'module.{k}': v for k, v in module.state_dict().items()}
  opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
  torch.save({'epoch': 19, wrapper: sd, 'optimizer': opt.state_dict()}, path)


def _public_me_graphau(repo: str, alias: str, stage: int, arch: str, **kwargs):
  """The public MEFARG (``model/ANFL.py`` or ``model/MEFL.py``) without pretrained loading."""
  module = public_code.load(repo, f'model.{"ANFL" if stage == 1 else "MEFL"}', alias)
  for source, names in (('model.resnet', ('resnet18', 'resnet50', 'resnet101')),
                        ('model.swin_transformer', ('swin_transformer_tiny',
                                                    'swin_transformer_small',
                                                    'swin_transformer_base'))):
    trunks = public_code.load(repo, source, alias)
    for name in names:
      original = getattr(trunks, name)
      setattr(module, name, lambda pretrained=False, _f=original, **kw: _f(pretrained=False, **kw))
  return module.MEFARG(backbone=arch, **kwargs)


def _run_public(net, *inputs):
  with torch.no_grad(), _as_device_zero():
    return net(*inputs)


def _import_and_load(tmp_path, path, **options):
  from faujax import trained_run
  from faujax.tools import import_checkpoint
  out = str(tmp_path / 'run')
  sd, skips = import_checkpoint.import_weights.read_checkpoint(path)
  report = import_checkpoint.import_state_dict(sd, out, wrapper_skips=skips, **options)
  return report, trained_run.load_run(out)


def _faujax_outputs(run, x_nchw: np.ndarray) -> dict:
  import jax
  images = np.transpose(x_nchw, (0, 2, 3, 1))
  out, _ = jax.jit(lambda v, b: run.apply_fn(v, b, train=False))(run.variables,
                                                                 {'image': images})
  return {k: np.asarray(v) for k, v in out.items()}


def _input(seed: int = 0, size: int = 224) -> np.ndarray:
  return np.random.default_rng(seed).standard_normal((2, 3, size, size)).astype(np.float32)


ME_GRAPHAU_CASES = [(stage, arch, n) for stage in (1, 2) for arch in ('resnet18', 'resnet50')
                    for n in (12, 8)] + [(2, 'resnet101', 12)]


@pytest.mark.parametrize('stage,arch,n', ME_GRAPHAU_CASES)
def test_me_graphau_equals_the_public_model(stage, arch, n, tmp_path):
  net = _public_me_graphau(ME, 'public_megau', stage, arch, num_classes=n,
                           **({'neighbor_num': 4 if n == 12 else 3} if stage == 1 else {}))
  _randomise(net, stage * 100 + n, 4, 3, 224, 224)
  path = str(tmp_path / 'model.pth')
  _save(net, path)
  report, run = _import_and_load(tmp_path, path)
  assert (report['format'], report['stage'], report['arch']) == ('me_graphau', stage, arch)
  assert any('optimiser' in why for why in report['skipped'].values())
  _compare_me_graphau(net, run, f'me_graphau stage {stage} {arch} {n} AUs', _input())


def _compare_me_graphau(net, run, name: str, x: np.ndarray) -> None:
  """The outputs from the image, and the head's from the public trunk's own tokens.

  Two float32 implementations of a deep trunk differ by their rounding (XLA's and oneDNN's
  convolutions sum in other orders: about 1e-6 of the features per ResNet-50, more for
  ResNet-101), which the cosine head shrinks and the edge path's two cross-attentions amplify.
  So the head is held to 1e-5 on the same tokens, and the whole model on the image to 1e-5 or,
  for a trunk whose own features already differ more, twice their difference.
  """
  out = _run_public(net, torch.from_numpy(x))
  out = out if isinstance(out, tuple) else (out,)
  got = _faujax_outputs(run, x)
  with torch.no_grad(), _as_device_zero():
    tokens = net.backbone(torch.from_numpy(x)).numpy()
  images = np.transpose(x, (0, 2, 3, 1))
  ours = np.asarray(run.model().backbone(images, train=False)).reshape(tokens.shape)
  trunk = _report(f'{name}: trunk tokens', ours, tokens)
  from_tokens = run.model().from_tokens(tokens, train=False)
  assert _report(f'{name}: AU probabilities from the same tokens',
                 np.asarray(from_tokens['au_probs']), out[0].numpy()) <= RTOL
  assert _report(f'{name}: AU probabilities', got['au_probs'], out[0].numpy()) <= max(RTOL,
                                                                                     2 * trunk)
  if len(out) > 1:  # the edge logits (B, N * N, 4) of ME-GraphAU's edge classifier
    edges = out[1].numpy()
    assert _report(f'{name}: edge logits from the same tokens',
                   np.asarray(from_tokens['edge_logits']).reshape(edges.shape), edges) <= RTOL
    _report(f'{name}: edge logits', got['edge_logits'].reshape(edges.shape), edges)


# The public names of the transformer trunks -> faujax's.
TRANSFORMERS = {'swin_transformer_tiny': 'swin_tiny', 'swin_transformer_small': 'swin_small',
                'swin_transformer_base': 'swin_base', 'mae': 'mae_vit_base'}


@pytest.mark.parametrize('stage,arch,n', [(2, 'swin_transformer_tiny', 12),
                                          (1, 'swin_transformer_small', 12),
                                          (2, 'swin_transformer_base', 8)])
def test_me_graphau_with_a_swin_trunk_equals_the_public_model(stage, arch, n, tmp_path):
  net = _public_me_graphau(ME, 'public_megau', stage, arch, num_classes=n,
                           **({'neighbor_num': 4 if n == 12 else 3} if stage == 1 else {}))
  _randomise(net, 31 + stage, 2, 3, 224, 224)
  path = str(tmp_path / 'model.pth')
  _save(net, path)
  report, run = _import_and_load(tmp_path, path)
  assert report['arch'] == TRANSFORMERS[arch]
  _compare_me_graphau(net, run, f'me_graphau stage {stage} {arch} {n} AUs', _input(4))


@pytest.mark.parametrize('stage,arch', [(1, 'resnet18'), (1, 'resnet50'), (2, 'resnet18'),
                                        (2, 'resnet50'), (2, 'swin_transformer_tiny'),
                                        (2, 'swin_transformer_base'), (1, 'mae'), (2, 'mae')])
def test_opengraphau_equals_the_public_model(stage, arch, tmp_path):
  net = _public_me_graphau(OPEN, 'public_ogau', stage, arch, num_main_classes=27,
                           num_sub_classes=14)
  _randomise(net, 7 + stage, 2, 3, 224, 224)
  path = str(tmp_path / 'model.pth')
  _save(net, path)
  report, run = _import_and_load(tmp_path, path)
  assert (report['format'], report['stage'], len(report['labels'])) == ('opengraphau', stage, 41)
  assert report['arch'] == TRANSFORMERS.get(arch, arch)
  _compare_me_graphau(net, run, f'opengraphau stage {stage} {arch}', _input(1))


def test_macg_equals_the_public_model(tmp_path):
  model = public_code.load('au-recognition', 'model', 'public_macg')
  model.resnet50 = lambda pretrained=False, _f=model.resnet50, **kw: _f(pretrained=False, **kw)
  net = model.MACG(num_classes=8, backbone='resnet50', neighbor_num=3)
  _randomise(net, 3, 4, 3, 224, 224)
  path = str(tmp_path / 'macg.pth')
  _save(net, path)
  report, run = _import_and_load(tmp_path, path)
  assert report['format'] == 'macg' and run.config.model.top_k == 3
  x = _input(2)
  want = _run_public(net, torch.from_numpy(x)).numpy()
  with torch.no_grad():
    tokens = net.backbone(torch.from_numpy(x)).numpy()  # (B, 49, 2048), the 7 x 7 map
  ours = np.asarray(run.model().backbone(np.transpose(x, (0, 2, 3, 1)), train=False))
  trunk = _report('macg resnet50 8 AUs: trunk tokens', ours.reshape(tokens.shape), tokens)
  head = run.model().from_map(tokens.reshape(2, 7, 7, -1), train=False)['au_probs']
  assert _report('macg resnet50 8 AUs: AU probabilities from the same tokens', head,
                 want) <= RTOL
  got = _faujax_outputs(run, x)['au_probs']
  assert _report('macg resnet50 8 AUs: AU probabilities', got, want) <= max(RTOL, 2 * trunk)


def _public_emotion_gcn(input_size: int = 227):
  """The public Emotion_GCN (DenseNet-121 from torchvision, without downloading it) at its
  AffectNet (227) or Aff-Wild2 (112) input size, with the repository's adjacency file
  (spearman_affectnet.pkl; the file's matrix is the parameter ``A`` the import keeps)."""
  tv = pytest.importorskip('torchvision')
  torch.manual_seed(0)  # the layers `_randomise` leaves at torch's default init: a fixed model
  models = public_code.load('emotion-gcn', 'models', 'public_egcn')
  original = tv.models.densenet121
  models.models.densenet121 = lambda pretrained=False, **kw: original(weights=None)
  adj = os.path.join(public_code.root('emotion-gcn'), 'data', 'spearman_affectnet.pkl')
  return models.Emotion_GCN(adj_file=adj, in_channel=300, input_size=input_size)


@pytest.mark.parametrize('dataset,size', [('affectnet', 227), ('aff_wild2', 112)])
def test_emotion_gcn_equals_the_public_model(dataset, size, tmp_path):
  net = _public_emotion_gcn(size)
  emb = torch.randn(9, 300, generator=torch.Generator().manual_seed(0))
  _randomise(net, 5, 4, 3, size, size, extra=(emb[None],))
  torch.save(emb, tmp_path / 'emb.pkl')
  path = str(tmp_path / 'egcn.pth')
  _save(net, path, wrapper='model_state_dict')
  report, run = _import_and_load(tmp_path, path, embeddings=str(tmp_path / 'emb.pkl'),
                                 **({'dataset': dataset} if dataset != 'affectnet' else {}))
  assert report['format'] == 'emotion_gcn'
  assert run.config.augment.image_size == size
  x = _input(3, size)
  cat, cont = _run_public(net, torch.from_numpy(x), emb[None])
  got = _faujax_outputs(run, x)
  name = 'emotion_gcn densenet121' + ('' if dataset == 'affectnet' else f' {dataset}')
  assert _report(f'{name} logits', got['expression_logits'], cat.numpy()) <= RTOL
  assert _report(f'{name} valence-arousal', got['va'], cont.numpy()) <= RTOL


SAMPLE_FACES = ('data/BP4D/img/F001/T1/2440.jpg', 'data/DISFA/img/SN001/0.png',
                'OpenGraphAU/demo_imgs/1014.jpg')


@pytest.mark.parametrize('fmt,arch', [('me_graphau', 'resnet50'), ('opengraphau', 'resnet50'),
                                      ('me_graphau', 'swin_transformer_base'),
                                      ('opengraphau', 'swin_transformer_tiny'),
                                      ('opengraphau', 'mae')])
def test_user_path_equals_the_public_test_transform(fmt, arch, tmp_path):
  """``Predictor`` on the authors' sample faces against ``utils.image_test`` + their model."""
  from PIL import Image
  from faujax import predictor
  repo, alias = (ME, 'public_megau') if fmt == 'me_graphau' else (OPEN, 'public_ogau')
  kwargs = {'num_classes': 12} if fmt == 'me_graphau' else {'num_main_classes': 27,
                                                           'num_sub_classes': 14}
  net = _public_me_graphau(repo, alias, 2, arch, **kwargs)
  _randomise(net, 11, 4, 3, 224, 224)
  path = str(tmp_path / 'model.pth')
  _save(net, path)
  _, run = _import_and_load(tmp_path, path)
  utils = public_code.load(repo, 'utils', alias)
  transform = (utils.image_test if fmt == 'me_graphau' else utils.image_eval)()
  faces = [os.path.join(public_code.root(ME), f) for f in SAMPLE_FACES]
  want = [_run_public(net, transform(Image.open(f).convert('RGB'))[None]) for f in faces]
  want = np.concatenate([(w[0] if isinstance(w, tuple) else w).numpy() for w in want])
  table = predictor.Predictor(run, batch_size=2).predict(faces, faces='cropped')
  columns = [f'{predictor.au_column(n)}_p' for n in run.info.label_names]
  got = table[columns].to_numpy(np.float64)
  assert _report(f'{fmt} stage 2 {arch}: user path on the sample faces', got, want) <= RTOL


def test_emotion_gcn_user_path_equals_its_val_transform(tmp_path):
  from PIL import Image
  from faujax import predictor
  net = _public_emotion_gcn()  # skips without the public code or torchvision
  from torchvision import transforms
  # Word vectors at 0.1 keep the logits O(1) (at 1.0 they reach +-20 and the softmax saturates,
  # which would hide any difference).
  emb = 0.1 * torch.randn(9, 300, generator=torch.Generator().manual_seed(1))
  _randomise(net, 13, 4, 3, 227, 227, extra=(emb[None],))
  torch.save(emb, tmp_path / 'emb.pkl')
  path = str(tmp_path / 'egcn.pth')
  _save(net, path, wrapper='model_state_dict')
  _, run = _import_and_load(tmp_path, path, embeddings=str(tmp_path / 'emb.pkl'))
  val = transforms.Compose([transforms.Resize(227), transforms.ToTensor(), transforms.Normalize(
      mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])  # main.py's val_transforms
  faces = [os.path.join(public_code.root(ME), f) for f in SAMPLE_FACES]  # square face crops
  logits = np.concatenate([_run_public(net, val(Image.open(f).convert('RGB'))[None],
                                       emb[None])[0].numpy() for f in faces])
  want = np.exp(logits - logits.max(1, keepdims=True))
  want /= want.sum(1, keepdims=True)
  assert want.max() < 0.9, f'the public softmax saturates ({want.max()}): the test would see nothing'
  table = predictor.Predictor(run, batch_size=2).predict(faces, faces='cropped')
  got = table[[n.lower() for n in run.info.label_names]].to_numpy(np.float64)
  assert _report('emotion_gcn densenet121: user path (softmax) on the sample faces', got,
                 want) <= RTOL
