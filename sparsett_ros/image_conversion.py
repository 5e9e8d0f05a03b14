"""sensor_msgs/Image <-> NumPy, the project's replacement for cv_bridge.

There is no ROS 2 cv_bridge on PyPI (the PyPI `cv-bridge` is a ROS 1 port that breaks on
NumPy 2), and cv_bridge drags in a C++ build for what is a reshape. This module does the
conversions the node and tools need with NumPy only:

* `image_to_array(msg)`: the message's pixels as an (H, W) or (H, W, C) array in the message's
  own encoding. It is a zero-copy view of `msg.data` whenever the buffer allows it (always for
  rclpy messages, whose `data` is an `array.array`): `step` padding is skipped with strides and
  `is_bigendian` selects the byte order of 16-bit encodings.
* `image_to_bgr(msg)`: (H, W, 3) uint8 BGR, what the tracker consumes (zero-copy for bgr8).
* `array_to_image(array, encoding, header)`: the reverse direction (one copy, into the message).
* `compressed_to_bgr(msg)`: decode a sensor_msgs/CompressedImage (JPEG/PNG) to BGR.

Messages are duck-typed (`height`, `width`, `encoding`, `is_bigendian`, `step`, `data`), so rclpy
messages and `rosbags` messages both work. Every problem raises `ImageConversionError` with a
message that says what is wrong and what is supported.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# encoding -> (NumPy base dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
}
SUPPORTED = ", ".join(ENCODINGS)


class ImageConversionError(ValueError):
    """An image message that cannot be converted; the message says why."""


def _as_byte_array(data: Any) -> np.ndarray:
    """`msg.data` as a flat uint8 array, without copying when the buffer protocol allows it."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.view(np.uint8).reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview)) or hasattr(data, "buffer_info"):
        return np.frombuffer(data, dtype=np.uint8)  # array.array, bytes: zero-copy
    return np.asarray(data, dtype=np.uint8)  # a list of ints (copy)


def image_to_array(msg: Any) -> np.ndarray:
    """View an Image message's pixels as an array in its own encoding.

    Args:
        msg: sensor_msgs/Image (rclpy or rosbags) with encoding in `ENCODINGS`.

    Returns:
        (H, W) for mono8/mono16, (H, W, C) otherwise; dtype uint8 or uint16 in native byte
        order. A view of `msg.data` (read-only for bytes buffers) when no byte swap is needed.

    Raises:
        ImageConversionError: unsupported encoding, zero size, or `data`/`step` that do not
            match width and height.
    """
    encoding = str(msg.encoding)
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding {encoding!r}: use one of {SUPPORTED}")
    dtype, channels = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image ({width}x{height}): width and height must be positive")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width*channels*bytes = {row_bytes} for a {width}x{height} {encoding} image")
    buf = _as_byte_array(msg.data)
    if buf.size != step * height:
        raise ImageConversionError(
            f"data has {buf.size} bytes but step*height = {step}*{height} = {step * height} for a "
            f"{width}x{height} {encoding} image")
    rows = buf.reshape(height, step)[:, :row_bytes]  # H, row_bytes (skips step padding, no copy)
    if dtype.itemsize > 1:
        order = ">" if bool(msg.is_bigendian) else "<"
        rows = rows.view(dtype.newbyteorder(order))  # H, W*C
        if not rows.dtype.isnative:
            rows = rows.astype(dtype)  # byte swap to native order (copy)
    pixels = rows.reshape(height, width, channels)  # H, W, C
    return pixels[:, :, 0] if channels == 1 else pixels


def image_to_bgr(msg: Any) -> np.ndarray:
    """Convert an Image message to the tracker's input.

    Args:
        msg: sensor_msgs/Image in any encoding of `ENCODINGS`.

    Returns:
        (H, W, 3) uint8 BGR. A zero-copy view for bgr8; a new array otherwise. mono16 keeps
        its 8 most significant bits.
    """
    pixels = image_to_array(msg)
    encoding = str(msg.encoding)
    if encoding == "bgr8":
        return pixels
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    if encoding == "bgra8":
        return np.ascontiguousarray(pixels[:, :, :3])
    if encoding == "rgba8":
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    if encoding == "mono16":
        pixels = (pixels >> 8).astype(np.uint8)
    return np.repeat(pixels[:, :, None], 3, axis=2)  # mono8 / mono16


def array_to_image(array: np.ndarray, encoding: str, header: Any = None, msg_type: Any = None) -> Any:
    """Build an Image message from an array.

    Args:
        array: (H, W) or (H, W, C) with the dtype and channel count of `encoding`.
        encoding: one of `ENCODINGS`.
        header: optional std_msgs/Header copied into the message.
        msg_type: the Image class to build (default: rclpy's sensor_msgs.msg.Image).

    Returns:
        The message, little-endian, `step = W * C * itemsize`, one copy of the pixels.
    """
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding {encoding!r}: use one of {SUPPORTED}")
    dtype, channels = ENCODINGS[encoding]
    array = np.asarray(array)
    expected = (channels,) if channels > 1 else ()
    if array.ndim != 2 + (channels > 1) or array.shape[2:] != expected or array.dtype != dtype:
        raise ImageConversionError(
            f"array of shape {array.shape} and dtype {array.dtype} does not fit {encoding!r}: expected "
            f"(H, W{', ' + str(channels) if channels > 1 else ''}) {dtype}")
    if msg_type is None:
        from sensor_msgs.msg import Image as msg_type  # noqa: N813 (rclpy import only when needed)
    height, width = array.shape[:2]
    msg = msg_type()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian = 0
    msg.step = width * channels * dtype.itemsize
    msg.data = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
    return msg


def compressed_to_bgr(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg or png, as image_transport writes it).

    Returns:
        (H, W, 3) uint8 BGR.

    Raises:
        ImageConversionError: the payload is empty or not an image OpenCV can decode.
    """
    import cv2

    buf = _as_byte_array(msg.data)
    if buf.size == 0:
        raise ImageConversionError(f"empty CompressedImage (format {msg.format!r})")
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageConversionError(
            f"CompressedImage with format {msg.format!r} could not be decoded: the node supports jpeg and png")
    return image


def bgr_to_compressed(image: np.ndarray, header: Any = None, fmt: str = "jpeg", quality: int = 90,
                      msg_type: Any = None) -> Any:
    """Encode (H, W, 3) uint8 BGR as a sensor_msgs/CompressedImage ("jpeg" or "png")."""
    import cv2

    if fmt not in ("jpeg", "png"):
        raise ImageConversionError(f"compressed format {fmt!r} not supported: use 'jpeg' or 'png'")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", image, params)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode an image of shape {image.shape} as {fmt}")
    if msg_type is None:
        from sensor_msgs.msg import CompressedImage as msg_type  # noqa: N813
    msg = msg_type()
    if header is not None:
        msg.header = header
    msg.format = fmt
    msg.data = encoded.tobytes()
    return msg
