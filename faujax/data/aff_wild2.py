"""Aff-Wild2 tensorflow-datasets builder (Emotion-GCN, sec. IV-A.2).

Reads the official ``cropped_aligned`` frames and the per-video expression (EXPR_Set)
and valence-arousal (VA_Set) annotation files. Each annotation file has a header line
and then one label per frame: line k + 1 labels frame ``<video>/<k:05d>.jpg``.
Expression lines hold a class code whose names are given by the header (e.g.
``Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other``); the codes are mapped
to ``faujax.labels.EXPRESSIONS_7`` by name, ``Other`` frames have no 7-class label;
-1 = unlabelled. VA lines are ``valence,arousal``; -5 = unlabelled.

Configs (which frames are kept; every kept frame carries all labels it has):
  * ``both`` (default, Emotion-GCN): frames with an expression and a VA label.
  * ``expr``: frames with an expression label (VA attached where present).
  * ``va``: frames with a VA label (expression attached where present, else -1).

Splits: ``test`` = the official Validation_Set; ``train`` = Train_Set minus
``validation``, 10% of the Train_Set videos chosen by a stable hash of the video name
(``_left`` / ``_right`` suffixes removed so both persons of a video stay together).
Frames that the annotations list but ``cropped_aligned`` lacks (the official
distribution is known to miss some) are counted skips. The frames are cropped and
aligned already: they are only resized (to 227 x 227 for Emotion-GCN).

Reading rules (the text rules of ``expression_builder_base``): line order is the frame
number, so a blank line before the last entry is an error (it would shift every later
frame's label by one); blank lines at the end of a file are accepted. The header must
name each class once. Codes outside -1 / 0..n-1, valence / arousal outside [-1, 1]
other than the -5 pair, a -5 paired with an annotated value, and non-finite numbers
are errors naming file:line. Counted skips (printed after the build): frames marked
unlabelled (-1, -5), ``Other`` frames in the configs that need a 7-class label, frames
past the end of the shorter of a video's EXPR / VA files, videos with only one of the
two files in config ``both``, and annotated frames missing from ``cropped_aligned``.
A video annotated in both Train_Set and Validation_Set is an error.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from etils import epath
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import expression_builder_base as base

SETS = {'train': 'Train_Set', 'test': 'Validation_Set'}
EXPR_UNLABELLED = -1
VA_UNLABELLED = -5.0
# Header names of the Aff-Wild2 expression classes -> EXPRESSIONS_7 index (None: no 7-class).
EXPR_NAME_TO_INDEX: dict[str, int | None] = {
    'neutral': 0, 'happiness': 1, 'happy': 1, 'sadness': 2, 'sad': 2, 'surprise': 3,
    'fear': 4, 'disgust': 5, 'anger': 6, 'angry': 6, 'other': None,
}
_PERSON_SUFFIX = re.compile(r'_(left|right)$')


@dataclasses.dataclass(eq=False)
class AffWild2Config(tfds.core.BuilderConfig):
  """Aff-Wild2 options.

  Attributes:
    keep: 'both', 'expr' or 'va': which labels a frame must have to be kept.
    image_size: output side (frames are resized; 227 in Emotion-GCN).
    validation_fraction: fraction of Train_Set videos held out as ``validation``.
  """

  keep: str = 'both'
  image_size: int = 227
  validation_fraction: float = 0.1


# read_expr_file's marker of a frame whose class has no 7-class label ('Other').
OTHER = 'other'


def read_expr_file(path: epath.Path) -> list[int | str | None]:
  """Per-frame labels of one EXPR_Set file: line k + 1 is frame k (see the module docstring).

  Returns:
    One entry per frame: the EXPRESSIONS_7 index, ``OTHER`` for a class without a 7-class
    label, or None for an unlabelled frame (-1).

  Raises:
    ValueError: when the file does not exist.
    base.AnnotationError: naming file and line for an unknown or repeated header name, an
      unknown code, a malformed line or a blank line before the last entry.
  """
  (_, header), *rows = base.read_text_lines(
      path, 'a header line of class names such as Neutral,Anger,Disgust,Fear,Happiness,Sadness,'
      'Surprise,Other, then one expression code per frame')
  names = [n.strip().lower() for n in header.split(',')]
  unknown = [n for n in names if n not in EXPR_NAME_TO_INDEX]
  if unknown:
    raise base.AnnotationError(
        path, 1, f'unknown expression name(s) {unknown}; expected a header such as '
        'Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other.')
  classes = [EXPR_NAME_TO_INDEX[n] for n in names]
  repeated = sorted({n for n, c in zip(names, classes)
                     if c is not None and classes.count(c) > 1 or names.count(n) > 1})
  if repeated:
    raise base.AnnotationError(path, 1, f'header names a class more than once ({repeated}).')
  mapping = [OTHER if c is None else c for c in classes]
  out: list[int | str | None] = []
  for line_no, line in rows:
    code = base.parse_int(line, path, line_no, 'an integer expression code')
    if code == EXPR_UNLABELLED:
      out.append(None)
    elif 0 <= code < len(mapping):
      out.append(mapping[code])
    else:
      raise base.AnnotationError(
          path, line_no, f'unknown expression code {code}; expected -1 '
          f'(unlabelled) or 0-{len(mapping) - 1} ({",".join(names)}).')
  return out


def read_va_file(path: epath.Path) -> list[tuple[float, float] | None]:
  """Per-frame (valence, arousal) (None = unlabelled, -5) of one VA_Set file.

  Raises:
    ValueError: when the file does not exist.
    base.AnnotationError: naming file and line for a bad header, a malformed, out-of-range
      or half-unlabelled line, or a blank line before the last entry.
  """
  (_, header), *rows = base.read_text_lines(
      path, 'a header line "valence,arousal", then one "valence,arousal" line per frame')
  if [h.strip().lower() for h in header.split(',')] != ['valence', 'arousal']:
    raise base.AnnotationError(path, 1, 'expected the header "valence,arousal".')
  out: list[tuple[float, float] | None] = []
  for line_no, line in rows:
    tokens = line.split(',')
    if len(tokens) != 2:
      raise base.AnnotationError(path, line_no, f'expected "valence,arousal", got {line[:80]!r}.')
    v, a = (base.parse_float(t, path, line_no, 'a valence / arousal value') for t in tokens)
    if v == VA_UNLABELLED and a == VA_UNLABELLED:
      out.append(None)
    elif -1.0 <= v <= 1.0 and -1.0 <= a <= 1.0:
      out.append((v, a))
    else:
      raise base.AnnotationError(
          path, line_no, 'valence/arousal must be in [-1, 1], or both -5 (unlabelled); '
          f'got {v}, {a}.')
  return out


def _read_set(manual_dir: epath.Path, task_dir: str, set_dir: str,
              reader) -> dict[str, tuple[epath.Path, list]]:
  """{video: (annotation file, per-frame labels)} of one <task_dir>/<set_dir> folder."""
  folder = manual_dir / task_dir / set_dir
  if not folder.is_dir():
    raise ValueError(f'Expected the Aff-Wild2 annotation folder {folder} (<video>.txt files).')
  return {p.name[:-len('.txt')]: (p, reader(p)) for p in sorted(folder.iterdir())
          if p.name.endswith('.txt') and len(p.name) > len('.txt')}


def video_group(video: str) -> str:
  """The source video of an annotation name (``_left`` / ``_right`` person suffix removed)."""
  return _PERSON_SUFFIX.sub('', video)


class AffWild2(base.ExpressionBuilder):
  """Aff-Wild2 (Kollias and Zafeiriou 2019): expressions and valence-arousal of video frames."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release.',
      '1.1.0': "Metadata: 'label_names' (the task's labels), 'multi_label_names', "
               "'class_counts' and 'train_occurrence_rates' of the task's labels.",
  }
  BUILDER_CONFIGS = [
      AffWild2Config(name='both', keep='both',
                     description='Frames with both labels (Emotion-GCN).'),
      AffWild2Config(name='expr', keep='expr', description='Frames with an expression label.'),
      AffWild2Config(name='va', keep='va', description='Frames with a valence-arousal label.'),
  ]
  DEFAULT_CONFIG_NAME = 'both'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Aff-Wild2 is released by D. Kollias (Queen Mary University of London / the ABAW
  challenges, https://ibug.doc.ic.ac.uk/resources/aff-wild2/) after signing its EULA.
  Request the cropped-aligned frames and the expression and valence-arousal annotations,
  and lay them out as:

    <manual_dir>/cropped_aligned/<video>/<frame:05d>.jpg     (e.g. 1-30-1280x720/00001.jpg)
    <manual_dir>/EXPR_Set/Train_Set/<video>.txt
    <manual_dir>/EXPR_Set/Validation_Set/<video>.txt
    <manual_dir>/VA_Set/Train_Set/<video>.txt
    <manual_dir>/VA_Set/Validation_Set/<video>.txt

  (the annotation archive unpacks to folders such as EXPR_Classification_Challenge/ and
  VA_Estimation_Challenge/ or EXPR_Set/ and VA_Set/: move or link them to EXPR_Set/ and
  VA_Set/). The EXPR_Set folders are needed for configs both and expr, the VA_Set folders
  for both and va; if both exist, the other labels are attached where present.
  """

  def _homepage(self) -> str:
    return 'https://ibug.doc.ic.ac.uk/resources/aff-wild2/'

  def _static_metadata(self) -> dict[str, Any]:
    keep = self.builder_config.keep
    if keep not in ('both', 'expr', 'va'):
      raise ValueError(f"AffWild2Config.keep must be 'both', 'expr' or 'va'; got {keep!r}.")
    return {
        'task': 'expression',
        'class_names': list(labels.EXPRESSIONS_7),
        'has_expression': True,
        'has_expression_multi': False,
        'has_va': True,
        'has_landmarks': False,
        'has_subject': False,
        'keep': keep,
        'image_size': self._image_size(),
        'test_split_source': 'Validation_Set',
        'validation_fraction': float(self.builder_config.validation_fraction),
    }

  def _read_records(self, manual_dir: epath.Path, skips: base.SkipCounter):
    keep = self.builder_config.keep
    need_expr, need_va = keep in ('both', 'expr'), keep in ('both', 'va')
    frames_root = manual_dir / 'cropped_aligned'
    if not frames_root.is_dir():
      raise ValueError(f'Expected the Aff-Wild2 frames at {frames_root}/<video>/<frame:05d>.jpg.')
    splits = {}
    annotated: dict[tuple[str, str], epath.Path] = {}  # (task, video) -> first file
    for split, set_dir in SETS.items():
      expr = (_read_set(manual_dir, 'EXPR_Set', set_dir, read_expr_file)
              if need_expr or (manual_dir / 'EXPR_Set' / set_dir).is_dir() else {})
      va = (_read_set(manual_dir, 'VA_Set', set_dir, read_va_file)
            if need_va or (manual_dir / 'VA_Set' / set_dir).is_dir() else {})
      for task, files in (('EXPR_Set', expr), ('VA_Set', va)):
        for video, (p, _) in files.items():
          first = annotated.setdefault((task, video), p)
          if first != p:
            raise base.AnnotationError(
                p, 1, f'video {video} is annotated in {first} too; a video belongs to one '
                'set (Train_Set or Validation_Set).')
      if keep == 'both':
        videos = set(expr) & set(va)
      else:
        videos = set(expr if keep == 'expr' else va)
      for video in sorted((set(expr) | set(va)) - videos):
        p, frames = (expr if video in expr else va)[video]
        if frames:
          skips.add(f'frames of videos without the annotation file(s) config {keep!r} needs',
                    str(p.relative_to(manual_dir)), len(frames))
      videos = sorted(videos)
      records = []
      for video in videos:
        e_path, e_labels = expr.get(video, (None, []))
        v_path, va_labels = va.get(video, (None, []))
        video_dir = frames_root / video
        on_disk = {p.name for p in video_dir.iterdir()} if video_dir.is_dir() else set()
        for i in range(max(len(e_labels), len(va_labels))):
          e = e_labels[i] if i < len(e_labels) else None
          v = va_labels[i] if i < len(va_labels) else None
          e_where = None if e_path is None else f'{e_path.relative_to(manual_dir)}:{i + 2}'
          v_where = None if v_path is None else f'{v_path.relative_to(manual_dir)}:{i + 2}'
          if need_expr and i >= len(e_labels) or need_va and i >= len(va_labels):
            skips.add('frames past the end of the shorter of the EXPR_Set / VA_Set files',
                      e_where if i < len(e_labels) else v_where)
            continue
          if need_expr and e is None:
            skips.add('frames with expression -1 (unlabelled)', e_where)
            continue
          if need_expr and e == OTHER:
            skips.add('frames of class Other (no 7-class label)', e_where)
            continue
          if need_va and v is None:
            skips.add('frames with valence/arousal -5 (unlabelled)', v_where)
            continue
          frame = f'{i + 1:05d}.jpg'
          if frame not in on_disk:
            skips.add('annotated frame missing from cropped_aligned', f'{video}/{frame}')
            continue
          records.append(base.ExpressionRecord(
              key=f'{set_dir}/{video}/{frame}', image_path=str(video_dir / frame),
              file_name=f'cropped_aligned/{video}/{frame}',
              expression=-1 if e is None or e == OTHER else e,
              valence=0.0 if v is None else v[0], arousal=0.0 if v is None else v[1],
              va_mask=0.0 if v is None else 1.0,
              source=(str(e_path if e_path is not None and i < len(e_labels) else v_path), i + 2)))
      splits[split] = records
    train, validation = base.carve_validation(
        splits['train'], lambda r: video_group(r.file_name.split('/')[1]),
        float(self.builder_config.validation_fraction))
    return {'train': train, 'validation': validation, 'test': splits['test']}
