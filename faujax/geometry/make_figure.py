"""Draws docs/geometry_example.png: landmarks, AU centres, ROIs and attention maps of a face.

  python -m faujax.geometry.make_figure [--out docs/geometry_example.png] [--size 256]

The face is a rendered synthetic face (``faujax.data.synthetic_faces``) when that package
is importable, otherwise faujax's canonical mean face drawn as line art. Panels: (1) the
68 landmarks, the JAA-Net AU centres of all AUs faujax knows and the unique 25 px ROIs
(AU-GCN's n = 25 on a 200 px face, scaled); (2) the JAA-Net 200 x 200 alignment with the
49 landmarks; (3) the JAA-Net per-AU attention maps (max over AUs) on the aligned face;
(4) the EAC-Net attention map on the aligned face.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from faujax import labels
from faujax.geometry import alignment
from faujax.geometry import attention_maps
from faujax.geometry import au_centres
from faujax.geometry import conversions
from faujax.geometry import mean_face


def _synthetic_face(size: int):
  """(image float (S, S, 3) in [0, 1], landmarks (68, 2), source) or None."""
  try:
    from faujax.data.synthetic_faces import face_model  # pylint: disable=g-import-not-at-top
    from faujax.data.synthetic_faces import renderer  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  strength = np.zeros(len(labels.ALL_AUS))
  for au, value in ((6, 2.5), (12, 3.5), (25, 2.0)):
    strength[labels.ALL_AUS.index(au)] = value
  nuisance = face_model.neutral_nuisance()
  image, lm = renderer.render_face(face_model.sample_identity(0, 1), strength, nuisance, size)
  return image.astype(np.float32) / 255.0, lm.astype(np.float32), 'synthetic renderer'


def _line_art_face(size: int):
  """The canonical mean face drawn as line art on a grey background."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  lm = mean_face.MEAN_FACE_68 * (size / mean_face.FRAME_SIZE)
  fig = plt.figure(figsize=(size / 100, size / 100), dpi=100)
  ax = fig.add_axes([0, 0, 1, 1])
  ax.set_facecolor((0.8, 0.8, 0.8))
  for part, closed in ((range(0, 17), False), (range(17, 22), False), (range(22, 27), False),
                       (range(27, 31), False), (range(31, 36), False), (range(36, 42), True),
                       (range(42, 48), True), (range(48, 60), True), (range(60, 68), True)):
    pts = lm[list(part)]
    if closed:
      pts = np.concatenate([pts, pts[:1]])
    ax.plot(pts[:, 0], pts[:, 1], color='k', lw=1.5)
  ax.set_xlim(-0.5, size - 0.5)
  ax.set_ylim(size - 0.5, -0.5)
  ax.axis('off')
  fig.canvas.draw()
  image = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.float32) / 255.0
  plt.close(fig)
  return image, lm.astype(np.float32), 'canonical mean face'


def make_figure(out: str, size: int = 256) -> str:
  """Renders the figure to ``out`` (PNG) and returns the face source used."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  face = _synthetic_face(size) or _line_art_face(size)
  image, lm, source = face
  aus = labels.ALL_AUS
  au_centres.au_centres_checked(lm, aus, 'jaanet')  # raises if a centre leaves the face
  table = au_centres.roi_table(aus, 'jaanet')
  roi_c = np.asarray(au_centres.roi_centres(lm, aus, 'jaanet')[0])
  patch = 25 * float(np.linalg.norm(
      np.subtract(*[np.asarray(e) for e in alignment.eye_centres(lm)]))) / 68.6

  aligned = alignment.check_aligned(alignment.align_jaanet(jnp.asarray(image), lm))
  a_img = np.clip(np.asarray(aligned.image), 0, 1)
  a_lm = np.asarray(aligned.landmarks)
  a_centres = np.asarray(au_centres.au_centres(a_lm, aus, 'jaanet')[0])
  jaa = np.asarray(attention_maps.jaanet_attention_maps(
      jnp.asarray(a_centres), image_size=200, map_size=52)).max(0)
  eac = np.asarray(attention_maps.eacnet_attention_map(
      jnp.asarray(au_centres.au_centres(a_lm, 'bp4d', 'eacnet')[0]).reshape(-1, 2), 200))

  fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), dpi=100,
                           gridspec_kw={'wspace': 0.05})
  ax = axes[0]
  ax.imshow(np.clip(image, 0, 1))
  ax.scatter(lm[:, 0], lm[:, 1], s=5, c='white', edgecolors='k', linewidths=0.3, zorder=3)
  cmap = plt.get_cmap('tab20')
  for i, roi in enumerate(table):
    color = cmap(i % 20)
    for cx, cy in roi_c[i]:
      ax.add_patch(plt.Rectangle((cx - patch / 2, cy - patch / 2), patch, patch, fill=False,
                                 color=color, lw=1.0, zorder=2))
    name = '/'.join(f'AU{a}' for a in roi.aus)
    ax.scatter(roi_c[i][:, 0], roi_c[i][:, 1], s=22, color=color, marker='x', zorder=4,
               label=name)
  ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False,
            handletextpad=0.2, columnspacing=0.8)
  ax.set_title(f'68 landmarks, JAA-Net AU centres, ROIs\n({source})', fontsize=9)
  ax = axes[1]
  ax.imshow(a_img)
  lm49 = np.asarray(conversions.convert_landmarks(a_lm, 49))
  ax.scatter(lm49[:, 0], lm49[:, 1], s=5, c='yellow', edgecolors='k', linewidths=0.3)
  tpl = alignment.JAANET_TEMPLATE_200
  ax.scatter(tpl[:, 0], tpl[:, 1], s=40, facecolors='none', edgecolors='cyan', linewidths=1.0)
  ax.set_title('JAA-Net alignment 200 x 200 (box x2.9)\n49 points; cyan: 5-point template',
               fontsize=9)
  ax = axes[2]
  ax.imshow(a_img)
  ax.imshow(jaa, cmap='jet', alpha=0.5, extent=(-0.5, 199.5, 199.5, -0.5), vmin=0, vmax=1)
  ax.set_title('JAA-Net attention maps (max over AUs)', fontsize=9)
  ax = axes[3]
  ax.imshow(a_img)
  ax.imshow(eac, cmap='jet', alpha=0.5, extent=(-0.5, 199.5, 199.5, -0.5), vmin=0, vmax=1)
  ax.set_title('EAC-Net attention map (BP4D AUs)', fontsize=9)
  for ax in axes:
    ax.axis('off')
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, bbox_inches='tight')
  plt.close(fig)
  return source


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default=os.path.join('docs', 'geometry_example.png'))
  parser.add_argument('--size', type=int, default=256)
  args = parser.parse_args(argv)
  source = make_figure(args.out, args.size)
  print(f'wrote {args.out} ({source})')


if __name__ == '__main__':
  main()
