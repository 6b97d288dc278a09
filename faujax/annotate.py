"""Pictures of predictions: faces drawn on their frame, and AU probabilities over a video.

``draw_frame`` draws on a copy of the frame (PIL, fast enough for every video frame): the face box,
the 68 landmarks and a caption per face (the active AUs, ``AUxx_c`` = 1, or the most probable
expression and valence / arousal). ``plot_over_time`` is a matplotlib figure of every ``AUxx_p``
(or expression probability) column against ``timestamp`` for one video's rows: those of the face
seen in the most frames (``main_face``, by the ``face_id`` that follows a face through the video).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

_BOX = (60, 230, 90)
_POINT = (255, 60, 60)
_TEXT = (255, 255, 255)


def caption(row: dict[str, Any], columns: Sequence[str]) -> str:
  """The active AUs (``AUxx_c`` = 1), else the most probable expression (+ V / A)."""
  active = [c[:-2] for c in columns if c.startswith('AU') and c.endswith('_c') and row.get(c) == 1]
  if any(c.startswith('AU') and c.endswith('_p') for c in columns):
    return ' '.join(active) if active else 'no AU'
  probs = {c: row[c] for c in columns if c not in _NON_PROB and not c.endswith('_c')
           and not c.startswith(('x_', 'y_')) and isinstance(row.get(c), (float, np.floating))}
  text = max(probs, key=probs.get) if probs else ''
  if 'valence' in row and 'arousal' in row:
    text += f' V {row["valence"]:+.2f} A {row["arousal"]:+.2f}'
  return text


_NON_PROB = ('input', 'frame', 'timestamp', 'face_id', 'face_x', 'face_y', 'face_w', 'face_h',
             'confidence', 'success', 'valence', 'arousal')


def draw_frame(image: np.ndarray, rows: Sequence[dict[str, Any]],
               columns: Sequence[str]) -> np.ndarray:
  """uint8 (H, W, 3): ``image`` with each successful row's box, landmarks and caption."""
  canvas = Image.fromarray(np.asarray(image, np.uint8)).convert('RGB')
  draw = ImageDraw.Draw(canvas)
  h, w = canvas.height, canvas.width
  r = max(1.0, min(h, w) / 160)
  for row in rows:
    if row.get('success') != 1:
      continue
    x0, y0 = row['face_x'], row['face_y']
    x1, y1 = x0 + row['face_w'], y0 + row['face_h']
    draw.rectangle([x0, y0, x1, y1], outline=_BOX, width=max(1, int(r)))
    for i in range(68):
      x, y = row[f'x_{i}'], row[f'y_{i}']
      draw.ellipse([x - r, y - r, x + r, y + r], fill=_POINT)
    text = caption(row, columns)
    ty = y1 + 2 if y1 + 14 < h else max(y0 - 14, 0)
    box = draw.textbbox((x0, ty), text)
    draw.rectangle(box, fill=(0, 0, 0))
    draw.text((x0, ty), text, fill=_TEXT)
  return np.asarray(canvas)


def main_face(table: Any) -> int:
  """The ``face_id`` found in the most frames of a video's rows (``success`` 1; the smallest id
  of a tie, 0 when there is none): the face ``plot_over_time`` follows."""
  found = table.loc[table['success'] == 1, 'face_id']
  if not len(found):
    return 0
  counts = found.value_counts()
  return int(min(counts.index[counts == counts.max()]))


def plot_over_time(table: Any, out: str, title: str = '') -> str:
  """Writes the PNG ``out``: each AU's probability (or each expression's) over time, of the face
  seen in the most frames (``main_face``; its id is in the title when the video has others)."""
  # A pyplot-free Figure: writes the file without touching the caller's backend (a notebook's
  # inline plots keep working).
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  face = main_face(table)
  # Every frame, NaN where the face is missing: the lines break there.
  rows = table[['frame', 'timestamp']].drop_duplicates('frame').merge(
      table[(table['face_id'] == face) & (table['success'] == 1)].drop(columns='timestamp'),
      on='frame', how='left')
  if table.loc[table['success'] == 1, 'face_id'].nunique() > 1:
    title = f'{title}, face {face}' if title else f'face {face}'
  cols = [c for c in table.columns if c.startswith('AU') and c.endswith('_p')]
  if not cols:
    cols = [c for c in table.columns if c not in _NON_PROB and not c.endswith('_c')
            and not c.startswith(('x_', 'y_'))]
  fig = Figure(figsize=(8, 3.2), dpi=100)
  ax = fig.subplots()
  for c in cols:
    ax.plot(rows['timestamp'], rows[c], lw=1.2, label=c[:-2] if c.endswith('_p') else c)
  ax.set_xlabel('time (s)')
  ax.set_ylabel('probability')
  ax.set_ylim(0, 1)
  ax.set_title(title)
  ax.legend(ncol=max(1, len(cols) // 4), fontsize=7, loc='upper right')
  fig.tight_layout()
  fig.savefig(out)
  return out
