"""faujax.geometry.stored_faces: the crops and alignments the datasets store and the released
models' data tools apply, against OpenCV's outputs (recorded from OpenCV 5.1: cv2 is not a
dependency) and the formulas they implement."""

import numpy as np
import pytest

from faujax.geometry import mean_face
from faujax.geometry import schemes
from faujax.geometry import stored_faces

# cv2.resize(X, (8, 7), interpolation=cv2.INTER_AREA), cv2.resize(Y, (4, 6), ...) and
# cv2.cvtColor(X, cv2.COLOR_RGB2GRAY), OpenCV 5.1.
_RNG = np.random.default_rng(0)
X = _RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)
X_UP = np.array([
    95, 130, 194, 144, 161, 210, 217, 207, 235, 55, 172, 73, 55, 174, 52, 215, 217, 130, 235,
    200, 62, 248, 189, 16, 89, 144, 204, 139, 156, 209, 214, 175, 219, 64, 158, 65, 55, 167,
    45, 169, 223, 114, 182, 201, 58, 191, 187, 22, 69, 184, 232, 123, 142, 207, 205, 78, 169,
    90, 116, 42, 55, 148, 21, 29, 240, 66, 23, 205, 50, 19, 182, 39, 64, 94, 146, 95, 116,
    130, 143, 150, 107, 101, 129, 45, 96, 131, 33, 119, 159, 47, 72, 168, 67, 42, 174, 80, 59,
    4, 59, 68, 91, 53, 81, 222, 44, 112, 142, 49, 138, 113, 46, 208, 78, 28, 122, 131, 84, 64,
    166, 121, 82, 129, 190, 95, 153, 189, 116, 189, 189, 124, 130, 121, 122, 119, 95, 109,
    136, 59, 122, 137, 153, 132, 139, 216, 89, 170, 233, 104, 173, 235, 127, 178, 237, 128,
    126, 146, 118, 121, 112, 76, 155, 69, 123, 140, 176, 154, 130, 248], np.uint8).reshape(7, 8, 3)
Y = _RNG.integers(0, 256, (9, 10, 3), dtype=np.uint8)
Y_DOWN = np.array([
    162, 155, 145, 139, 155, 139, 107, 107, 145, 135, 161, 146, 192, 99, 133, 128, 155, 122,
    146, 76, 162, 79, 95, 161, 189, 73, 161, 95, 84, 122, 122, 147, 84, 140, 66, 99, 141, 112,
    161, 93, 162, 72, 147, 128, 142, 94, 146, 177, 170, 152, 79, 124, 89, 161, 63, 158, 69,
    112, 100, 95, 173, 124, 166, 134, 45, 145, 109, 81, 142, 133, 154, 149], np.uint8).reshape(6, 4, 3)
X_GREY = np.array([
    127, 213, 104, 206, 187, 155, 126, 93, 157, 117, 27, 160, 113, 111, 130, 153, 169, 119,
    122, 151], np.uint8).reshape(4, 5)


def test_area_resize_enlarging_equals_opencv():
  np.testing.assert_array_equal(stored_faces.area_resize(X, 8, 7), X_UP)


def test_area_resize_shrinking_is_the_area_mean_and_opencv_within_one_level():
  out = stored_faces.area_resize(Y, 4, 6)
  assert np.abs(out.astype(int) - Y_DOWN).max() <= 1
  # A slow reference: each output pixel averages the source over its footprint (fractional
  # pixels weighted by their overlap).
  sy, sx = 9 / 6, 10 / 4
  for i in range(6):
    for j in range(4):
      acc = np.zeros(3)
      for u in range(9):
        wy = max(0.0, min((i + 1) * sy, u + 1) - max(i * sy, u))
        for v in range(10):
          wx = max(0.0, min((j + 1) * sx, v + 1) - max(j * sx, v))
          acc += wy * wx * Y[u, v]
      np.testing.assert_array_equal(out[i, j], np.rint(acc / (sy * sx)))
  with pytest.raises(ValueError, match='positive'):
    stored_faces.area_resize(Y, 0, 3)


def test_grey_equals_opencv():
  np.testing.assert_array_equal(stored_faces.grey(X), X_GREY)


def _tilted_face(angle_deg=12.0, scale=0.3, offset=(10.0, 5.0)):
  lm68 = mean_face.MEAN_FACE_68 * scale + np.array(offset)
  theta = np.deg2rad(angle_deg)
  rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  return (lm68 - 40) @ rot.T + 40


def test_eye_level_puts_the_eyes_where_imutils_does():
  """imutils' FaceAligner (MACG's data tool): the eye centres, truncated to integer pixels, land
  level and 0.3 of the side apart, and their integer midpoint (floor of the mean) at half the
  side across and 0.35 of it from the top."""
  lm = _tilted_face(-9.0, 2.5, (300.0, 200.0))
  size = 256
  m = stored_faces.eye_level_matrix(lm, size)
  eyes = np.stack([lm[36:42].mean(0).astype(int), lm[42:48].mean(0).astype(int)])
  mapped = eyes @ m[:, :2].T + m[:, 2]
  assert mapped[0, 1] == pytest.approx(mapped[1, 1]) and mapped[0, 0] < mapped[1, 0]
  assert mapped[1, 0] - mapped[0, 0] == pytest.approx(0.3 * size)
  middle = eyes.sum(0) // 2
  np.testing.assert_allclose(middle @ m[:, :2].T + m[:, 2], [0.5 * size, 0.35 * size],
                             atol=1e-9)
  with pytest.raises(ValueError, match='coincide'):
    stored_faces.eye_level_matrix(np.zeros((68, 2)))


def test_align_eye_level_works_in_the_tools_800_px_frame():
  """The frame is resized to 800 px wide first (imutils): the aligned face of a 400 px frame
  equals that of the same frame enlarged by OpenCV's rule, with the landmarks scaled."""
  rng = np.random.default_rng(0)
  frame = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
  lm = _tilted_face(7.0, 1.2, (150.0, 80.0))
  face, points = stored_faces.align_eye_level(frame, lm.astype(np.float32))
  big = stored_faces.area_resize(frame, 800, 600)
  face_big, points_big = stored_faces.align_eye_level(big, (lm * 2).astype(np.float32))
  np.testing.assert_array_equal(face, face_big)
  np.testing.assert_allclose(points, points_big, atol=1e-3)
  assert face.shape == (256, 256, 3)
  eyes = np.stack([points[36:42].mean(0), points[42:48].mean(0)])
  assert abs(eyes[0, 1] - eyes[1, 1]) < 2.0  # level (up to the integer truncation)


def test_centre_crop_resize():
  img = np.zeros((40, 60, 3), np.uint8)
  img[:, 10:50] = 255  # the centre 40 x 40 square is white
  out = stored_faces.centre_crop_resize(img, 20)
  assert out.shape == (20, 20, 3) and out.min() == 255


def test_align_face_is_a_similarity_with_level_eyes():
  lm68 = mean_face.MEAN_FACE_68 * 0.3 + np.array([10.0, 5.0])
  theta = np.deg2rad(12.0)
  rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  lm68 = (lm68 - 40) @ rot.T + 40
  img = np.random.default_rng(1).integers(0, 255, (80, 90, 3), dtype=np.uint8)
  for pts in (lm68, lm68[schemes.IDX_66_IN_68], lm68[schemes.IDX_49_IN_68]):
    face, out = stored_faces.align_jaanet(img, pts.astype(np.float32))
    assert face.shape == (200, 200, 3) and face.dtype == np.uint8 and out.shape == pts.shape
    d_in = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    d_out = np.linalg.norm(out[:, None] - out[None], axis=-1)
    ratio = d_out[d_in > 1] / d_in[d_in > 1]
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-3)  # similarity: one scale
    eye_r = out[schemes.SUBSET_OF_68[len(pts)].tolist().index(36):][:6].mean(0)
    eye_l = out[schemes.SUBSET_OF_68[len(pts)].tolist().index(42):][:6].mean(0)
    assert abs(eye_r[1] - eye_l[1]) < 1e-2
  assert stored_faces.alignable(np.stack([lm68, np.zeros_like(lm68)])).tolist() == [True, False]
