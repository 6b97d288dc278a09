"""The inputs of faujax.predict without a model: image modes read as 8-bit RGB, damaged videos
named with the frames read, missing and empty inputs, the face floors on real photos and the
face ids that follow a face through a video (issue 33, "Inputs")."""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faujax import annotate
from faujax import faces as faces_lib
from faujax import predict
from faujax import predictor as predictor_lib
from faujax.geometry import mean_face


def _gradient(h=24, w=32) -> np.ndarray:
  """uint8 (h, w) covering 0..255."""
  return np.rint(np.linspace(0, 255, h * w)).reshape(h, w).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# Images of every PIL mode.


def test_a_16_bit_grey_png_is_scaled_by_its_range_not_clipped_to_white(tmp_path):
  grey = _gradient()
  path = tmp_path / 'grey16.png'
  Image.fromarray(grey.astype(np.uint16) * 257).save(path)  # 0..65535
  with Image.open(path) as im:
    assert im.mode == 'I;16'
  np.testing.assert_array_equal(predictor_lib.read_image(str(path)),
                                np.repeat(grey[..., None], 3, -1))
  # 12 of the 16 bits used: still scaled by the 16-bit range, not clipped.
  Image.fromarray((grey.astype(np.uint16) * 16)).save(path)
  got = predictor_lib.read_image(str(path))[..., 0]
  np.testing.assert_allclose(got, grey.astype(float) * 16 / 257, atol=0.51)


def _modes(tmp_path):
  """(file, expected uint8 (H, W, 3)) of images in other PIL modes."""
  grey = _gradient()
  g3 = np.repeat(grey[..., None], 3, -1)
  white = np.full_like(g3, 255)
  half = np.zeros(grey.shape, bool)
  half[:, grey.shape[1] // 2:] = True  # the right half transparent
  out = {}
  Image.fromarray(grey.astype(np.int32) * 257, 'I').save(tmp_path / 'i32.tif')
  out['I'] = (tmp_path / 'i32.tif', g3)
  Image.fromarray(grey.astype(np.float32) / 255.0, 'F').save(tmp_path / 'f.tif')
  out['F'] = (tmp_path / 'f.tif', g3)
  la = np.stack([grey, np.where(half, 0, 255).astype(np.uint8)], -1)
  Image.fromarray(la, 'LA').save(tmp_path / 'la.png')
  out['LA'] = (tmp_path / 'la.png', np.where(half[..., None], white, g3))
  rgba = np.concatenate([g3, np.where(half, 0, 255).astype(np.uint8)[..., None]], -1)
  rgba[half] = (0, 0, 0, 0)  # transparent black: read as white, not black
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
  out['RGBA'] = (tmp_path / 'rgba.png', np.where(half[..., None], white, g3))
  palette = Image.fromarray(np.where(half, 1, 2).astype(np.uint8), 'P')
  palette.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 50] + [0] * 759)
  palette.save(tmp_path / 'p.png', transparency=1)
  out['P'] = (tmp_path / 'p.png', np.where(half[..., None], white,
                                           np.array([200, 100, 50], np.uint8)))
  Image.new('CMYK', grey.shape[::-1], (0, 255, 255, 0)).save(tmp_path / 'cmyk.tif')
  out['CMYK'] = (tmp_path / 'cmyk.tif', np.broadcast_to(np.array([255, 0, 0], np.uint8),
                                                         g3.shape))
  Image.fromarray(half).save(tmp_path / 'bits.png')
  out['1'] = (tmp_path / 'bits.png', np.where(half[..., None], white, 0).astype(np.uint8))
  Image.new('LAB', grey.shape[::-1], (128, 128, 128)).save(tmp_path / 'lab.tif')
  out['LAB'] = (tmp_path / 'lab.tif', np.full_like(g3, 119))  # L* 50: sRGB grey 119
  return out


@pytest.mark.parametrize('mode', ['I', 'F', 'LA', 'RGBA', 'P', 'CMYK', '1', 'LAB'])
def test_image_modes_are_read_as_8_bit_rgb(tmp_path, mode):
  path, want = _modes(tmp_path)[mode]
  with Image.open(path) as im:
    assert im.mode == mode
  got = predictor_lib.read_image(str(path))
  assert got.dtype == np.uint8 and got.shape == want.shape
  np.testing.assert_allclose(got.astype(int), want.astype(int), atol=1)


def test_high_depth_values_outside_every_range_are_stretched():
  values = np.array([[-1000.0, 0.0], [500.0, 1000.0]], np.float32)
  got = predictor_lib.image_to_rgb(Image.fromarray(values, 'F'))[..., 0]
  np.testing.assert_array_equal(got, [[0, 128], [191, 255]])


# ------------------------------------------------------------------------------------------------
# Videos.


def write_faststart_mp4(path, n=60, size=48):
  """An H.264 MP4 of ``n`` noise frames with its index (moov) at the front (FFmpeg's
  ``movflags=faststart``, as streaming sites write them)."""
  av = pytest.importorskip('av')
  rng = np.random.default_rng(0)
  with av.open(str(path), 'w', options={'movflags': 'faststart'}) as container:
    stream = container.add_stream('libx264', rate=25)
    stream.width = stream.height = size
    stream.pix_fmt = 'yuv420p'
    for _ in range(n):
      frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (size, size, 3), np.uint8),
                                         format='rgb24')
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  data = path.read_bytes()
  assert data.find(b'moov') < data.find(b'mdat')


def test_a_truncated_faststart_mp4_is_named_with_the_frames_read(tmp_path):
  from faujax import video
  path = tmp_path / 'clip.mp4'
  write_faststart_mp4(path)
  assert sum(1 for _ in video.read_frames(str(path))) == 60
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 3])
  assert video.probe(str(path)).num_frames == 60  # the index still lists every frame
  read = []
  with pytest.raises(ValueError, match=r'decoded (\d+) of the 60 frames') as e:
    for n, _, _ in video.read_frames(str(path)):
      read.append(n)
  assert 0 < len(read) < 60 and f'decoded {len(read)} of the 60 frames' in str(e.value)
  assert str(e.value).count(str(path)) == 1


def test_a_truncated_mkv_is_named_by_its_listed_duration(tmp_path):
  pytest.importorskip('av')
  from faujax import video
  path = str(tmp_path / 'clip.mkv')
  with video.VideoWriter(path, 25) as writer:
    for k in range(50):
      writer.write(np.full((32, 32, 3), 5 * k, np.uint8))
  assert video.probe(path).num_frames == 0  # Matroska lists no frame count
  assert len(list(video.read_frames(path))) == 50
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:len(data) * 2 // 3])
  with pytest.raises(ValueError, match=r'decoded \d+ frame\(s\), [\d.]+ s of the 2.00 s'):
    list(video.read_frames(path))


def test_a_video_that_does_not_open_is_named_once(tmp_path):
  pytest.importorskip('av')
  from faujax import video
  path = tmp_path / 'broken.mp4'
  path.write_bytes(b'\x00\x00\x00\x18ftypmp42 truncated')
  for call in (video.probe, lambda p: list(video.read_frames(p))):
    with pytest.raises(ValueError, match='cannot open it as a video') as e:
      call(str(path))
    assert str(e.value).count(str(path)) == 1


# ------------------------------------------------------------------------------------------------
# Missing and empty inputs.


def test_missing_and_empty_inputs_are_errors_naming_the_path(tmp_path, capsys):
  missing = tmp_path / 'nowhere'
  with pytest.raises(ValueError, match=f'{missing}: no such file or folder'):
    predictor_lib.expand_inputs([str(missing)])
  empty = tmp_path / 'empty'
  (empty / 'sub').mkdir(parents=True)
  (empty / 'notes.txt').write_text('no image here')
  with pytest.raises(ValueError, match=f'{empty}: the folder holds no image or video'):
    predictor_lib.expand_inputs([str(empty)])
  with pytest.raises(ValueError, match=r'\.png: no such file or folder'):
    predictor_lib.read_image(str(tmp_path / 'gone.png'))
  # The command line: exit status 2 before the checkpoint is read, no CSV.
  for bad in (missing, empty):
    out = tmp_path / 'out.csv'
    rc = predict.main(['--checkpoint', str(tmp_path / 'no_run'), str(bad), '--out', str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and str(bad) in err and 'cannot read it as an image' not in err, err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# Face floors.


def _face(x, y, side, confidence=1.0):
  """A FaceBox of the mean face scaled to ``side`` px at (x, y)."""
  lm = mean_face.MEAN_FACE_68 * (side / mean_face.FRAME_SIZE) + np.array([x, y], np.float32)
  return faces_lib.FaceBox(np.array([x, y, x + side, y + side], np.float32),
                           lm.astype(np.float32), confidence)


def test_faces_below_a_floor_are_dropped():
  faces = [_face(0, 0, 90, 1.16), _face(100, 0, 89, 0.12), _face(0, 100, 20, 1.5),
           _face(100, 100, 40, 0.5)]
  kept = faces_lib.above_floors(faces)
  assert [f.confidence for f in kept] == [1.16, 0.5]
  assert faces_lib.above_floors(faces, 0.0, 0.0) == faces
  assert [f.confidence for f in faces_lib.above_floors(faces, 0.0, 50)] == [1.16, 0.12]
  assert faces_lib.box_side(faces_lib.FaceBox(np.array([0, 0, 30, 50.]), None, 1.0)) == 50
  given = faces_lib.faces_of('openface_csv', None, given=faces, max_faces=1)
  assert len(given) == 1 and given[0].confidence == 1.16


def test_the_default_floors_on_real_photos():
  """scikit-image's astronaut: her face (dlib score ~1.16) is kept, the mission patch on her
  suit (~0.12, as large as her face) dropped; matplotlib's grace_hopper: her face kept."""
  pytest.importorskip('skimage')
  if not faces_lib.face_detection.available():
    pytest.skip('the face extra (dlib models) is not installed')
  import matplotlib.cbook
  import skimage.data
  astronaut = skimage.data.astronaut()
  with matplotlib.cbook.get_sample_data('grace_hopper.jpg') as f:
    hopper = np.asarray(Image.open(f).convert('RGB'))
  every = faces_lib.detect(astronaut)  # as faces_of('detect', ...) finds them, unfiltered
  assert len(every) == 2
  patch = min(every, key=lambda f: f.confidence)
  assert patch.confidence < 0.15 and patch.box[1] > 300  # on the suit, below her face
  kept = faces_lib.above_floors(every)
  assert len(kept) == 1 and kept[0].confidence > 1.0 and kept[0].box[3] < 200
  assert faces_lib.box_side(kept[0]) >= faces_lib.MIN_FACE
  kept = faces_lib.faces_of('detect', hopper)
  assert len(kept) == 1 and kept[0].confidence > 1.0


# ------------------------------------------------------------------------------------------------
# Face ids through a video.


def test_face_ids_follow_a_face_by_position_not_by_size():
  track = faces_lib.FaceTracker()
  left = lambda side, dx=0: _face(10 + dx, 50, side)
  right = lambda side, dx=0: _face(200 + dx, 40, side)
  assert track([left(90), right(80)]) == [0, 1]
  assert track([right(100, 5), left(88, 3)]) == [1, 0]  # the right one now the larger
  assert track([left(86, 6)]) == [0]  # the right one missed in a frame ...
  assert track([]) == []
  assert track([right(100, 8), left(86, 8)]) == [1, 0]  # ... keeps its id
  assert track([_face(400, 200, 60), left(86, 10)]) == [2, 0]  # a new face, a new id
  for _ in range(track.max_gap + 1):
    track([left(86, 10)])
  assert track([left(86, 10), right(100, 8)]) == [0, 3]  # gone too long: a new id


def test_two_faces_crossing_sizes_keep_their_ids_through_matching():
  """Greedy matching takes the largest overlap first: a face between two old ones goes to the
  one it overlaps most, and two faces never share an id."""
  track = faces_lib.FaceTracker()
  assert track([_face(0, 0, 100), _face(60, 0, 100)]) == [0, 1]
  assert track([_face(55, 0, 100), _face(5, 0, 100)]) == [1, 0]
  assert track([_face(30, 0, 100), _face(31, 0, 100)]) == [0, 1]


def test_the_video_plot_follows_the_face_seen_in_most_frames(tmp_path):
  rows = [dict(frame=1, timestamp=0.0, face_id=0, success=1, AU01_p=0.1),
          dict(frame=2, timestamp=0.1, face_id=0, success=0, AU01_p=np.nan),
          dict(frame=2, timestamp=0.1, face_id=1, success=1, AU01_p=0.7),
          dict(frame=3, timestamp=0.2, face_id=1, success=1, AU01_p=0.8)]
  table = pd.DataFrame(rows)
  assert annotate.main_face(table) == 1
  assert annotate.main_face(table[table['face_id'] == 0]) == 0
  out = annotate.plot_over_time(table, str(tmp_path / 'au.png'), title='clip')
  assert os.path.getsize(out) > 0
