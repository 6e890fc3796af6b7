"""The checks of `keras_tx.validation` as TensorFlow graph ops, for the exported signatures (`keras_tx.export`).

Each check makes the decision the CLI, the Python API and the demo make, from the same constants, and fails with an
InvalidArgument error carrying the same sentence. Only core TensorFlow ops: a stock TF Serving binary runs them.
"""

import tensorflow as tf

from keras_tx import validation


def require(condition, message):
    """An op that fails with InvalidArgument carrying `message` (a `keras_tx.validation` sentence) unless
    `condition`: the graph makes the decision the CLI, the Python API and the demo make, in the same words."""
    return tf.debugging.Assert(condition, [tf.constant(message)])


def checked(value, *checks):
    """`value`, computed only once every check has passed."""
    with tf.control_dependencies(list(checks)):
        return tf.identity(value)


def text_checks(texts, what="The text", blank_ok=False):
    """`validation.text` on a batch of strings: valid UTF-8, at most MAX_TEXT_CHARACTERS, not empty."""
    repaired = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace")
    characters = tf.strings.length(repaired, unit="UTF8_CHAR")
    content = texts if blank_ok else tf.strings.strip(tf.strings.regex_replace(repaired, r"\s", " "))
    empty = f"{what} is empty: give at least one {'character' if blank_ok else 'word'}."
    return [
        require(tf.reduce_all(tf.equal(repaired, texts)), validation.NOT_UTF8),
        require(tf.reduce_all(characters <= validation.MAX_TEXT_CHARACTERS), validation.TEXT_TOO_LONG),
        require(tf.reduce_all(tf.strings.length(content) > 0), empty),
    ]


def batch_check(values):
    return require(tf.shape(values)[0] <= validation.MAX_BATCH, validation.BATCH_TOO_LARGE)


def token_id_check(token_ids, vocabulary_size):
    inside = (token_ids >= 0) & (token_ids < vocabulary_size)
    return require(tf.reduce_all(inside), f"{validation.TOKEN_IDS_OUT_OF_RANGE}: the vocabulary has "
                                           f"{vocabulary_size} tokens.")

def image_header_checks(data):
    """`validation.image_bytes` in graph ops: the file's size, its format and its pixels (width x height, times an
    upper bound of the frames of a GIF) read from the header, checked before anything is decoded."""
    padded = tf.strings.join([data, "\0" * 32])  # every field read below exists, whatever the length

    def number(offset, size, big_endian=False, signed=False):
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, offset, size), tf.uint8), tf.float64)
        weights = 256.0 ** tf.range(size, dtype=tf.float64)
        value = tf.reduce_sum(raw * (weights[::-1] if big_endian else weights))
        if signed:  # two's complement
            value = tf.where(value >= 2.0 ** (8 * size - 1), value - 2.0 ** (8 * size), value)
        return value

    def starts(prefix):
        return tf.equal(tf.strings.substr(padded, 0, len(prefix)), prefix)

    is_png, is_gif, is_bmp, is_jpeg = starts(b"\x89PNG\r\n\x1a\n"), starts(b"GIF87a") | starts(b"GIF89a"), \
        starts(b"BM"), starts(b"\xff\xd8")
    core_bmp = number(14, 4) == 12  # OS/2 BITMAPCOREHEADER: 16-bit sizes
    gif_frames = tf.cast(tf.size(tf.strings.split(data, sep="\x00,")), tf.float64)  # b"\x00," count + 1
    jpeg_shape = tf.cond(is_jpeg, lambda: tf.cast(tf.io.extract_jpeg_shape(data), tf.float64),
                         lambda: tf.ones([3], tf.float64))
    def bmp(core_offset, offset):
        return tf.abs(tf.where(core_bmp, number(core_offset, 2, signed=True), number(offset, 4, signed=True)))

    width = tf.case([(is_png, lambda: number(16, 4, True)), (is_gif, lambda: number(6, 2)),
                     (is_bmp, lambda: bmp(18, 18))], default=lambda: jpeg_shape[1])
    height = tf.case([(is_png, lambda: number(20, 4, True)), (is_gif, lambda: number(8, 2)),
                      (is_bmp, lambda: bmp(20, 22))], default=lambda: jpeg_shape[0])
    frames = tf.where(is_gif, gif_frames, 1.0)
    return [
        require(tf.strings.length(data) <= validation.MAX_IMAGE_BYTES, validation.IMAGE_FILE_TOO_LARGE),
        require(is_png | is_gif | is_bmp | is_jpeg, validation.NOT_AN_IMAGE),
        require(width * height * frames <= validation.MAX_IMAGE_PIXELS, validation.IMAGE_TOO_LARGE),
        require((width > 0) & (height > 0), validation.NOT_AN_IMAGE),
    ]
