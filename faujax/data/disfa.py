"""DISFA AU dataset builder (tfds ``disfa``): left camera, 8 AUs, 3 subject-exclusive folds.

Protocol (docs/reference/datasets.md, "DISFA"): AUs 1, 2, 4, 6, 9, 12, 25, 26
(``faujax.labels.DISFA_AUS``) from 0-5 intensity labels, occurrence = intensity >= 2
(``labels.OCCURRENCE_THRESHOLD``); part k = the test subjects of fold k (``TEST_PART_OF_FOLD``
is the identity); 1 subject of each part (the last of its sorted present subjects) forms
``part<k>_val``.

Configs (= layouts of the manual dir, see ``MANUAL_DOWNLOAD_INSTRUCTIONS``):
  ``official``         ``ActionUnit_Labels/SN001/SN001_au1.txt`` (lines ``frame,intensity``,
                       frames 1-based) + extracted left-camera frames
                       ``img/SN001/<frame - 1>.png`` (0-based, any zero padding, .png or .jpg)
                       + the 66 DISFA landmarks as distributed,
                       ``Landmark_Points/SN001/tmp_frame_lm/SN001_<frame - 1:04d>_lm.mat`` or
                       ``l<frame:05d>_lm.mat`` (variable ``pts``, (66, 2) x y). Faces aligned
                       to 200x200, 66 landmarks stored, ``au_intensity`` holds the 0-5
                       intensities. Videos are not decoded (faujax has no video reader
                       dependency): extract the frames first. Skips (metadata 'skipped',
                       logged at the end of the build): 'missing_frame', 'missing_landmarks',
                       'degenerate_landmarks' (frames), and 'missing_au_label': a frame absent
                       from one AU file (but present in another) gets mask 0 and intensity -1
                       for that AU, counted per (frame, AU). An empty AU file, a blank line in
                       it, a repeated frame or a bad value is an error naming file:line (see
                       ``read_intensity_file``), as are unreadable landmark files.
  ``megraphau_lists``  ME-GraphAU / MACG fold lists (DISFA_*_fold<k>.txt); no landmarks (P = 0).
  ``jaanet_lists``     JAA-Net ``DISFA_part<k>`` lists with 49 landmarks.
"""

from __future__ import annotations

import os
import re

from absl import logging
import numpy as np
import scipy.io

from faujax import labels
from faujax.data import au_builder_base as base
from faujax.data import au_lists

PARTS: dict[int, tuple[str, ...]] = {
    1: ('SN003', 'SN004', 'SN005', 'SN007', 'SN008', 'SN017', 'SN023', 'SN025', 'SN029'),
    2: ('SN006', 'SN011', 'SN012', 'SN013', 'SN018', 'SN021', 'SN024', 'SN028', 'SN031'),
    3: ('SN001', 'SN002', 'SN009', 'SN010', 'SN016', 'SN026', 'SN027', 'SN030', 'SN032'),
}
TEST_PART_OF_FOLD: dict[int, int] = {1: 1, 2: 2, 3: 3}
LABEL_ROOT = 'ActionUnit_Labels'
FRAME_ROOT = 'img'
LANDMARK_ROOT = 'Landmark_Points'
VIDEO_ROOT = 'Videos_LeftCamera'
NUM_DISFA_LANDMARKS = 66
_LM_0BASED = re.compile(r'^SN\d{3}_(\d{1,9})_lm\.mat$', re.ASCII)  # index = frame - 1
_LM_1BASED = re.compile(r'^l(\d{1,9})_lm\.mat$', re.ASCII)  # number = frame


def read_intensity_file(path: str) -> dict[int, float]:
  """Reads one DISFA ``<SN>_au<k>.txt``: {frame (1-based): intensity 0-5}.

  Lines are ``frame,intensity`` (a comma and / or spaces between the two), frames 1-based.

  Raises:
    ValueError (au_lists.ListFormatError): an empty file (it would mask the AU for the whole
      subject), a blank line inside the file, a line that is not ``frame,intensity`` with an
      integer frame >= 1 and an integer intensity in 0..5, a repeated frame (both lines named),
      non-UTF-8 bytes; the message names the file and the line.
  """
  out: dict[int, float] = {}
  first: dict[int, int] = {}
  lines = au_lists.read_lines(
      path, '"frame,intensity" lines, one per frame (an empty file would leave the AU unknown '
      'for the whole subject)')
  for i, line in lines:
    where = f'{path}:{i}'
    parts = au_lists.split_fields(line, where)
    if len(parts) != 2:
      raise au_lists.ListFormatError(f'{where}: {len(parts)} columns; expected "frame,intensity".')
    frame = au_lists.parse_int(parts[0], where, 'a frame number (1-based)', minimum=1)
    value = au_lists.parse_number(parts[1], where, 'an intensity 0-5')
    if value not in (0, 1, 2, 3, 4, 5):
      raise au_lists.ListFormatError(f'{where}: intensity {value:g}; expected an integer 0-5.')
    if frame in out:
      raise au_lists.ListFormatError(
          f'{where}: frame {frame} appears twice (first at {path}:{first[frame]}); expected one '
          'line per frame.')
    out[frame] = value
    first[frame] = i
  return out


def landmark_files(directory: str) -> dict[int, str]:
  """{frame (1-based): path} of DISFA's ``tmp_frame_lm`` .mat files (both naming schemes).

  Raises:
    ValueError (au_lists.ListFormatError): two files for one frame (e.g. both naming schemes).
  """
  out: dict[int, str] = {}
  if not os.path.isdir(directory):
    return out
  for name in sorted(os.listdir(directory)):
    m0, m1 = _LM_0BASED.match(name), _LM_1BASED.match(name)
    if not (m0 or m1):
      continue
    frame = int(m0.group(1)) + 1 if m0 else int(m1.group(1))
    path = os.path.join(directory, name)
    if frame in out:
      raise au_lists.ListFormatError(
          f'{path}: a second landmark file for frame {frame} (first {out[frame]}); expected one '
          'file per frame.')
    out[frame] = path
  return out


def read_landmark_mat(path: str) -> np.ndarray:
  """The (66, 2) ``pts`` array of a DISFA landmark .mat file (a (2, 66) array is transposed).

  Raises:
    ValueError (au_lists.ListFormatError): the file cannot be read as a MATLAB file (any scipy
      error), has no ``pts`` variable, or ``pts`` is not 66 finite (x, y) numbers; the message
      names the file.
  """
  try:
    contents = scipy.io.loadmat(path)
  except Exception as e:  # pylint: disable=broad-except  scipy raises many types on bad files.
    raise au_lists.ListFormatError(
        f'{path}: cannot read the .mat file ({type(e).__name__}: {e}); expected a MATLAB file '
        'with the (66, 2) DISFA landmarks "pts".') from None
  if 'pts' not in contents:
    raise au_lists.ListFormatError(
        f'{path}: no variable "pts"; expected the (66, 2) DISFA landmarks.')
  if np.iscomplexobj(contents['pts']):
    raise au_lists.ListFormatError(
        f'{path}: "pts" is complex; expected the (66, 2) real DISFA landmarks.')
  try:
    with np.errstate(over='ignore', invalid='ignore'):  # overflow shows as inf, rejected below.
      pts = np.asarray(contents['pts'], np.float32)
  except (TypeError, ValueError) as e:
    raise au_lists.ListFormatError(
        f'{path}: "pts" is not numeric ({e}); expected the (66, 2) DISFA landmarks.') from None
  if pts.shape == (2, NUM_DISFA_LANDMARKS):
    pts = pts.T
  if pts.shape != (NUM_DISFA_LANDMARKS, 2):
    raise au_lists.ListFormatError(f'{path}: "pts" has shape {pts.shape}; expected (66, 2).')
  if not np.isfinite(pts).all():
    raise au_lists.ListFormatError(
        f'{path}: "pts" holds non-finite values (NaN, inf or beyond float32); expected finite '
        '(x, y) pixel coordinates.')
  return pts


class Disfa(base.AUDatasetBuilder):
  """DISFA (left camera), 8 AUs, 3 subject-exclusive folds."""

  DS_NAME = 'DISFA'
  AUS = labels.DISFA_AUS
  PROTOCOL_PARTS = PARTS
  TEST_PART_OF_FOLD = TEST_PART_OF_FOLD
  NUM_VALIDATION_SUBJECTS = 1
  DESCRIPTION = ('DISFA: 27 subjects, left camera, 8 AUs (intensity >= 2 positive), '
                 '3 subject-exclusive folds.')
  HOMEPAGE = 'http://mohammadmahoor.com/disfa/'
  CITATION = ('Mavadati et al., DISFA: A spontaneous facial action intensity database, IEEE Trans. '
              'Affective Computing 4(2), 2013.')
  BUILDER_CONFIGS = [
      base.AUBuilderConfig(
          layout=au_lists.LAYOUT_OFFICIAL, num_landmarks=NUM_DISFA_LANDMARKS,
          description='Official labels + extracted left-camera frames + 66 landmarks.'),
      base.AUBuilderConfig(layout=au_lists.LAYOUT_MEGRAPHAU, num_landmarks=0,
                           description='ME-GraphAU / MACG fold lists (no landmarks).'),
      base.AUBuilderConfig(layout=au_lists.LAYOUT_JAANET, num_landmarks=49,
                           description='JAA-Net part lists with 49 landmarks.'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  DISFA is licensed by its authors for research use: request it with the agreement form at
  http://mohammadmahoor.com/disfa-contact-form/ . Then lay out the manual dir for the chosen
  config:

  disfa/official:
    <manual>/ActionUnit_Labels/SN001/SN001_au1.txt ... SN001_au26.txt  (lines "frame,intensity")
    <manual>/img/SN001/0.png, 1.png, ...  left-camera frames, file number = label frame - 1.
        Extract them from Videos_LeftCamera/LeftVideoSN001_comp.avi, e.g.
        ffmpeg -i LeftVideoSN001_comp.avi -start_number 0 img/SN001/%d.png
    <manual>/Landmark_Points/SN001/tmp_frame_lm/SN001_0000_lm.mat ...  (as distributed)
  disfa/megraphau_lists:
    <manual>/list/DISFA_{train,test}_img_path_fold{1,2,3}.txt
    <manual>/list/DISFA_{train,test}_label_fold{1,2,3}.txt
    <manual>/img/<path as listed, e.g. SN002/0.png>
  disfa/jaanet_lists:
    <manual>/list/DISFA_part{1,2,3}_{path,land,biocular,AUoccur}.txt
    <manual>/imgs/<path as listed>
  List files may also sit directly in <manual>/.
  """

  OFFICIAL_FILES = (f'{LABEL_ROOT}/SN001/SN001_au1.txt ..., {FRAME_ROOT}/SN001/0.png ... '
                    f'(extracted left-camera frames) and '
                    f'{LANDMARK_ROOT}/SN001/tmp_frame_lm/*.mat')

  @classmethod
  def official_layout_present(cls, manual_dir: str) -> bool:
    """The ActionUnit_Labels directory is present (the official layout's distinctive files)."""
    return os.path.isdir(os.path.join(manual_dir, LABEL_ROOT))

  def _official_records(self, manual_dir, skipped):
    label_root = os.path.join(manual_dir, LABEL_ROOT)
    frame_root = os.path.join(manual_dir, FRAME_ROOT)
    lm_root = os.path.join(manual_dir, LANDMARK_ROOT)
    if not (os.path.isdir(label_root) and os.path.isdir(lm_root)):
      raise base.AUDataError(
          f'Manual dir {manual_dir}: the official DISFA layout needs '
          f'{LABEL_ROOT}/SN001/SN001_au1.txt, {FRAME_ROOT}/SN001/0.png and '
          f'{LANDMARK_ROOT}/SN001/tmp_frame_lm/*.mat (found: labels {os.path.isdir(label_root)}, '
          f'landmarks {os.path.isdir(lm_root)}).' + self._layout_hint(manual_dir))
    records = []
    subjects = sorted(
        d for d in os.listdir(label_root) if os.path.isdir(os.path.join(label_root, d)))
    if not subjects:
      raise base.AUDataError(
          f'{label_root}: no subject directories; expected SN001/SN001_au1.txt etc.')
    for subject in subjects:
      sub_dir = os.path.join(label_root, subject)
      if self.protocol_part_of_subject(subject) is None:
        raise base.AUDataError(
            f'{sub_dir}: subject {subject!r} is outside the DISFA protocol; expected '
            f'one of {self.subject_names()}.')
      per_au = []
      for au in self.AUS:
        path = os.path.join(sub_dir, f'{subject}_au{au}.txt')
        if not os.path.isfile(path):
          raise base.AUDataError(
              f'{path} does not exist; expected one intensity file per AU {list(self.AUS)}.')
        per_au.append(read_intensity_file(path))
      frames_dir = os.path.join(frame_root, subject)
      frames = base.numbered_files(frames_dir)
      if not frames:
        video = os.path.join(manual_dir, VIDEO_ROOT, f'LeftVideo{subject}_comp.avi')
        extra = (
            f' Found the video {video}: extract its frames, e.g. ffmpeg -i {video} -start_number 0 '
            f'{frames_dir}/%d.png' if os.path.isfile(video) else '')
        raise base.AUDataError(f'{frames_dir}: no frames <frame - 1>.png; expected the extracted '
                               f'left-camera frames of {subject}.{extra}')
      marks = landmark_files(os.path.join(lm_root, subject, 'tmp_frame_lm'))
      first_file = os.path.join(sub_dir, f'{subject}_au{self.AUS[0]}.txt')
      masked = np.zeros((len(self.AUS),), np.int64)
      for frame in sorted(set().union(*per_au)):
        intensity = np.array([d.get(frame, -1.0) for d in per_au], np.float32)
        mask = (intensity >= 0).astype(np.float32)
        occurrence = (intensity >= labels.OCCURRENCE_THRESHOLD).astype(np.float32)
        if frame - 1 not in frames:
          skipped['missing_frame'] += 1
          continue
        if frame not in marks:
          skipped['missing_landmarks'] += 1
          continue
        if mask.min() == 0:
          masked += mask == 0
          skipped['missing_au_label'] += int((mask == 0).sum())
        image_path = frames[frame - 1]
        records.append(
            base.FrameRecord(
                key=os.path.relpath(image_path, frame_root).replace(os.sep, '/'),
                image_path=image_path, subject_name=subject, au=occurrence, au_mask=mask,
                au_intensity=np.where(mask > 0, intensity, -1.0).astype(np.float32),
                landmarks=read_landmark_mat(marks[frame]), source=f'{first_file} (frame {frame})'))
      for au, n in zip(self.AUS, masked):
        if n:
          logging.warning('%s: %d frames of %s are absent from this file: AU%d is unknown '
                          '(mask 0) for them (metadata skipped "missing_au_label").',
                          os.path.join(sub_dir, f'{subject}_au{au}.txt'), n, subject, au)
    return records
