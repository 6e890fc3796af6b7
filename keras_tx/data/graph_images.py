"""Image decoding as TensorFlow graph ops, for the exported `classify` signature: any PNG, JPEG, GIF or BMP file ->
the model's (height, width, channels) floats in [0, 1], as `keras_tx.data.images.load_image_file` makes them with
PIL (tests/test_export.py compares the two). The header is checked before anything is decoded
(`keras_tx.graph_checks.image_header_checks`): a decompression bomb is refused, not decoded.
"""

import tensorflow as tf

from keras_tx import graph_checks as guard

def _decode_jpeg(data, height, width, channels):
    """A JPEG as PIL's `draft` decodes it for `load_image_file`: DCT-scaled by the largest of 1/8, 1/4, 1/2, 1
    that keeps it at least the model's size, straight to grey for a grey model, ISLOW IDCT. (h, w, 3) float32."""
    shape = tf.io.extract_jpeg_shape(data)
    scale = tf.minimum(shape[1] // width, shape[0] // height)
    branch = tf.reduce_sum(tf.cast(scale >= tf.constant([2, 4, 8]), tf.int32))  # 0, 1, 2, 3 -> ratio 1, 2, 4, 8

    def decoder(ratio, channels):
        return lambda: tf.io.decode_jpeg(data, channels=channels, ratio=ratio, dct_method="INTEGER_ACCURATE")

    def decoded(channels):
        image = tf.switch_case(branch, [decoder(ratio, channels) for ratio in (1, 2, 4, 8)])
        return tf.cast(tf.tile(image, [1, 1, 3 // channels]), tf.float32)

    if channels == 3:
        return decoded(3)
    # libjpeg cannot turn CMYK (4 components) straight into grey: such a file is decoded to RGB, then made grey
    # with PIL's formula in `_to_model_pixels`, as PIL converts it.
    return tf.cond(shape[2] == 4, lambda: decoded(3), lambda: decoded(1))


def _decode_other(data):
    """PNG, GIF, BMP -> (h, w, 3) float32 RGB, transparency composited onto black, as PIL's conversion does."""
    image = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)  # (h, w, c), c in 1-4
    count = tf.shape(image)[-1]
    # Grey (1), grey + alpha (2), RGB (3), RGBA (4): which channels are R, G, B and which is alpha (-1: none).
    rgb = tf.gather(image, tf.gather(tf.constant([[0, 0, 0], [0, 0, 0], [0, 1, 2], [0, 1, 2]]), count - 1), axis=-1)
    alpha_channel = tf.gather(tf.constant([-1, 1, -1, 3]), count - 1)
    alpha = tf.cond(
        alpha_channel >= 0,
        lambda: tf.cast(tf.gather(image, [alpha_channel], axis=-1), tf.float32),
        lambda: tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), 255.0),
    )
    return tf.cast(rgb, tf.float32) * alpha / 255.0


def _contain_and_pad(rgb, height, width):
    """PIL's `ImageOps.pad`: resize to fit (aspect kept; Python's round is half-to-even, as tf.round), centre on
    black. The resize is TF's antialiased bilinear, close to PIL's; an image already at the size is untouched."""
    size = tf.cast(tf.shape(rgb)[:2], tf.float64)  # (h, w)
    image_ratio, target_ratio = size[1] / size[0], width / height
    new_height = tf.where(image_ratio > target_ratio, tf.round(size[0] / size[1] * width), float(height))
    new_width = tf.where(image_ratio < target_ratio, tf.round(size[1] / size[0] * height), float(width))
    new_height = tf.maximum(tf.cast(new_height, tf.int32), 1)
    new_width = tf.maximum(tf.cast(new_width, tf.int32), 1)
    resized = tf.image.resize(rgb, tf.stack([new_height, new_width]), antialias=True)
    top = tf.cast(tf.round(tf.cast(height - new_height, tf.float64) * 0.5), tf.int32)
    left = tf.cast(tf.round(tf.cast(width - new_width, tf.float64) * 0.5), tf.int32)
    return tf.image.pad_to_bounding_box(resized, top, left, height, width)


def to_model_pixels(data, height, width, channels):
    """One encoded image -> float32 (height, width, channels) in [0, 1], as `load_image_file` makes it with PIL.
    The header is checked first (`graph_checks.image_header_checks`): a decompression bomb is refused, not decoded."""
    data = guard.checked(data, *guard.image_header_checks(data))
    rgb = tf.cond(
        tf.io.is_jpeg(data), lambda: _decode_jpeg(data, height, width, channels), lambda: _decode_other(data)
    )
    rgb = _contain_and_pad(rgb, height, width)
    rgb = tf.cast(tf.clip_by_value(tf.floor(rgb + 0.5), 0, 255), tf.int32)  # PIL keeps 8-bit pixels
    if channels == 1:
        # PIL's "L" conversion, ITU-R 601-2 luma in 16-bit fixed point: exact on 8-bit pixels.
        rgb = (rgb[..., :1] * 19595 + rgb[..., 1:2] * 38470 + rgb[..., 2:] * 7471 + 0x8000) // 65536
    return tf.cast(rgb, tf.float32) / 255.0
