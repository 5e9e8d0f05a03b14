"""sparsett_ros.image_conversion: the cv_bridge replacement (pure NumPy, no ROS graph)."""
from __future__ import annotations

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from sparsett_ros.image_conversion import (ENCODINGS, ImageConversionError, array_to_image, bgr_to_compressed,
                                           compressed_to_bgr, image_to_array, image_to_bgr)


def raw(height, width, encoding, step, data, is_bigendian=0):
    return SimpleNamespace(height=height, width=width, encoding=encoding, step=step, data=data,
                           is_bigendian=is_bigendian)


@pytest.fixture
def bgr():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_round_trip_through_a_real_sensor_msgs_image(encoding):
    dtype, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(1)
    shape = (6, 9) if channels == 1 else (6, 9, channels)
    pixels = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    msg = array_to_image(pixels, encoding)
    assert (msg.height, msg.width, msg.encoding, msg.step) == (6, 9, encoding, 9 * channels * dtype.itemsize)
    assert isinstance(msg.data, array.array)  # rclpy's storage
    back = image_to_array(msg)
    np.testing.assert_array_equal(back, pixels)


def test_bgr8_is_a_zero_copy_view_of_the_message_buffer(bgr):
    msg = array_to_image(bgr, "bgr8")
    out = image_to_bgr(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(out, bgr)


@pytest.mark.parametrize("encoding,make", [
    ("rgb8", lambda b: b[:, :, ::-1]),
    ("bgra8", lambda b: np.dstack([b, np.full(b.shape[:2], 255, np.uint8)])),
    ("rgba8", lambda b: np.dstack([b[:, :, ::-1], np.full(b.shape[:2], 7, np.uint8)])),
])
def test_colour_encodings_convert_to_bgr(bgr, encoding, make):
    msg = array_to_image(np.ascontiguousarray(make(bgr)), encoding)
    np.testing.assert_array_equal(image_to_bgr(msg), bgr)


def test_mono_encodings_convert_to_three_equal_channels():
    mono = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = image_to_bgr(array_to_image(mono, "mono8"))
    assert out.shape == (3, 4, 3) and all(np.array_equal(out[:, :, c], mono) for c in range(3))
    mono16 = mono.astype(np.uint16) * 256 + 255
    np.testing.assert_array_equal(image_to_bgr(array_to_image(mono16, "mono16"))[:, :, 1], mono)


def test_step_padding_is_skipped_without_copy(bgr):
    h, w = bgr.shape[:2]
    step = w * 3 + 5
    padded = np.zeros((h, step), np.uint8)
    padded[:, : w * 3] = bgr.reshape(h, -1)
    padded[:, w * 3:] = 99  # padding must never show up in pixels
    data = array.array("B", padded.tobytes())
    out = image_to_array(raw(h, w, "bgr8", step, data))
    np.testing.assert_array_equal(out, bgr)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8))


def test_big_endian_mono16_is_byte_swapped():
    values = np.array([[1, 256, 65535], [4660, 0, 43981]], np.uint16)
    msg_be = raw(2, 3, "mono16", 6, values.astype(">u2").tobytes(), is_bigendian=1)
    msg_le = raw(2, 3, "mono16", 6, values.astype("<u2").tobytes(), is_bigendian=0)
    np.testing.assert_array_equal(image_to_array(msg_be), values)
    np.testing.assert_array_equal(image_to_array(msg_le), values)
    assert image_to_array(msg_be).dtype.isnative


def test_rosbags_style_numpy_data_is_accepted(bgr):
    flat = bgr.reshape(-1).copy()
    out = image_to_bgr(raw(5, 7, "bgr8", 21, flat))
    np.testing.assert_array_equal(out, bgr)
    assert np.shares_memory(out, flat)


@pytest.mark.parametrize("msg,match", [
    (raw(2, 2, "32FC1", 8, bytes(16)), "unsupported image encoding '32FC1'"),
    (raw(0, 0, "bgr8", 0, b""), r"empty image \(0x0\)"),
    (raw(2, 2, "bgr8", 6, bytes(11)), "data has 11 bytes but step\\*height = 6\\*2 = 12"),
    (raw(2, 2, "bgr8", 6, bytes(13)), "data has 13 bytes"),
    (raw(2, 4, "rgb8", 6, bytes(12)), "step 6 is smaller than width\\*channels\\*bytes = 12"),
])
def test_bad_messages_raise_with_a_reason(msg, match):
    with pytest.raises(ImageConversionError, match=match):
        image_to_bgr(msg)


def test_array_to_image_rejects_wrong_shape_or_dtype(bgr):
    with pytest.raises(ImageConversionError, match="does not fit 'mono8'"):
        array_to_image(bgr, "mono8")
    with pytest.raises(ImageConversionError, match="does not fit 'mono16'"):
        array_to_image(bgr[:, :, 0], "mono16")


def test_compressed_round_trip_png_and_jpeg(bgr):
    big = cv2.resize(bgr, (64, 48), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(compressed_to_bgr(bgr_to_compressed(big, fmt="png")), big)
    jpeg = compressed_to_bgr(bgr_to_compressed(big, fmt="jpeg", quality=100))
    assert jpeg.shape == big.shape and np.abs(jpeg.astype(int) - big).mean() < 20
    with pytest.raises(ImageConversionError, match="could not be decoded"):
        compressed_to_bgr(SimpleNamespace(format="jpeg", data=bytes(50)))
    with pytest.raises(ImageConversionError, match="empty CompressedImage"):
        compressed_to_bgr(SimpleNamespace(format="jpeg", data=b""))
