"""Every bound on what a request may ask for, and every check of user input, in one place.

The CLI, the Python API, the demo and the exported SavedModels make the same decision on the same input because
they all call this module: the Python surfaces call the functions below, and `keras_tx.export` builds graph
versions of the same checks from the same constants and sentences (so a TF Serving client reads the sentence a
CLI user reads, in an InvalidArgument error). It imports neither TensorFlow nor Keras: the CLI checks its
arguments before TensorFlow starts.

The bounds (README, "Limits"):

    MAX_NEW_TOKENS        2000   tokens one generation may add
    MAX_NUM_BEAMS           16   beams of beam search (memory grows with beams x length x model)
    MAX_TEXT_CHARACTERS 10,000   characters of one prompt, fill-mask text or text to translate
    MAX_BATCH               64   texts or images in one call
    MAX_IMAGE_BYTES      20 MiB  one encoded image file
    MAX_IMAGE_PIXELS       25 M  width x height of an image, read from its header before anything is decoded
                                 (x an upper bound of the frame count for a GIF, whose frames all decode)
    MAX_SAMPLES             64   completions of one image (image GPT)
"""

import math
import re
import struct

MAX_NEW_TOKENS = 2000
MAX_NUM_BEAMS = 16
MAX_TEXT_CHARACTERS = 10_000
MAX_BATCH = 64
MAX_IMAGE_BYTES = 20 * 2**20
MAX_IMAGE_PIXELS = 25_000_000
MAX_SAMPLES = 64
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP")

# The sentences that more than one surface says; export.py puts the same ones in its graph assertions.
NOT_UTF8 = "The text is not valid UTF-8."
TEXT_TOO_LONG = f"The text is longer than {MAX_TEXT_CHARACTERS:,} characters, the most one request may send."
BATCH_TOO_LARGE = f"At most {MAX_BATCH} items may be sent in one request."
IMAGE_TOO_LARGE = (f"The image is too large to decode safely: more than {MAX_IMAGE_PIXELS:,} pixels (width x height, "
                   "times the frames of a GIF) by its header.")
IMAGE_FILE_TOO_LARGE = f"The image file is too large: images up to {MAX_IMAGE_BYTES // 2**20} MB are accepted."
NOT_AN_IMAGE = "The data is not an image (PNG, JPEG, GIF or BMP)."
NO_MASK = "The text has no [MASK] to fill."


def one_line(error):
    """The first line of an error's message (an OSError: its file and reason), or its type when it has none: what a
    surface shows of an error it did not word itself."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}." if error.filename else f"{error.strerror}."
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def too_many_masks(limit):
    return f"At most {limit} [MASK]s are allowed in one text."

UNKNOWN_CHARACTERS = "The prompt has characters that are not in the model's vocabulary"
EMPTY_PROMPT = "The prompt is empty: give at least one character."
TOKEN_IDS_OUT_OF_RANGE = "Token ids must be in [0, vocabulary size)"
NO_KNOWN_WORD = "The text has no word the model knows (every piece of it is [UNK])"
TEMPERATURE = "temperature must be a finite number >= 0 (0 decodes greedily)"


def integer(name, value, low, high=None):
    """`value` as an int if it is an integer in [low, high] (high None: no upper bound), else ValueError.

    Example:
    >>> integer("top_k", 3, 1)
    3
    """
    if isinstance(value, bool) or not _is_integer(value) or value < low or (high is not None and value > high):
        raise ValueError(f"{name} {integer_range(low, high)}, got {value!r}.")
    return int(value)


def integer_range(low, high=None):
    """"must be an integer from 1 to 16" / "must be an integer >= 1": the rule, for messages."""
    return f"must be an integer from {low:,} to {high:,}" if high is not None else f"must be an integer >= {low}"


def number(name, value, low=None, high=None, low_open=False):
    """`value` as a float if it is a finite number in [low, high] ((low, high] with `low_open`), else ValueError."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        result = math.nan
    ok = math.isfinite(result) and (low is None or (result > low if low_open else result >= low))
    ok = ok and (high is None or result <= high)
    if not ok:
        raise ValueError(f"{name} {number_range(low, high, low_open)}, got {value!r}.")
    return result


def number_range(low=None, high=None, low_open=False):
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"<= {high:g}")
    return "must be a finite number" + (" " + " and ".join(parts) if parts else "")


def temperature(value, name="temperature"):
    """A sampling temperature: finite and >= 0; 0 means greedy decoding (on every surface)."""
    return number(name, value, low=0.0)


def seed(value, name="seed"):
    """A random seed: None, or an integer from 0 to 2**63 - 1 (the exported signatures take an int64)."""
    return None if value is None else integer(name, value, 0, 2**63 - 1)


def _is_integer(value):
    try:
        import numpy as np

        if isinstance(value, np.integer):
            return True
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return isinstance(value, int)


def text(value, what="The text", blank_ok=False):
    """A non-empty, valid UTF-8 string of at most MAX_TEXT_CHARACTERS characters, else ValueError.

    Bytes that were not UTF-8 on the command line reach Python as lone surrogates ("\\udce4"): they are refused
    here, as the exported signatures refuse invalid UTF-8. With `blank_ok`, spaces alone are a text (a prompt of a
    character-level model), only "" is empty.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(NOT_UTF8) from None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(NOT_UTF8) from None
    if len(value) > MAX_TEXT_CHARACTERS:
        raise ValueError(TEXT_TOO_LONG)
    if not (value if blank_ok else value.strip()):
        raise ValueError(f"{what} is empty: give at least one {'character' if blank_ok else 'word'}.")
    return value


def batch(items, what="items"):
    """`items` as a list of at most MAX_BATCH elements (an empty list is fine: it gets an empty answer)."""
    items = list(items)
    if len(items) > MAX_BATCH:
        raise ValueError(f"{BATCH_TOO_LARGE} Got {len(items)} {what}.")
    return items


def normalize_masks(value):
    """"[mask]" in any case -> "[MASK]": the masked-LM surfaces all accept it so (keras-hub lowercases text too).

    Example:
    >>> normalize_masks("a [mask] movie")
    'a [MASK] movie'
    """
    return re.sub(r"\[mask\]", "[MASK]", value, flags=re.IGNORECASE)


def id_rows(values, name, what="equal-length"):
    """Token ids given as one sequence (length,) or several (batch, length) -> ((batch, length) integer array,
    whether one sequence was given); anything else (floats, ragged lists, empty rows) is a ValueError naming
    `name`. `what` describes the rows a batch must have ("equal-length (padded with 0)")."""
    import numpy as np

    try:
        rows = np.asarray(values)
    except ValueError:  # ragged nested lists
        rows = np.asarray(values, dtype=object)
    if rows.dtype == object or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"`{name}` must be integer token ids: one sequence, or {what} sequences; got {values!r}.")
    single = rows.ndim == 1
    rows = rows[None] if single else rows
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError(f"`{name}` must be (length,) or (batch, length) with length >= 1, got {rows.shape}.")
    return rows, single


def token_ids(ids, vocabulary_size):
    """Refuse token ids outside [0, vocabulary_size) (an embedding lookup would clamp or fail silently)."""
    import numpy as np

    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= vocabulary_size):
        bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
        raise ValueError(f"{TOKEN_IDS_OUT_OF_RANGE}: the vocabulary has {vocabulary_size} tokens, got id {bad}.")
    return ids


# ------------------------------------------------------------------------------------------------ images


def image_header(data):
    """(format, width, height, frames) read from the first bytes of an encoded image, nothing decoded.

    frames is 1, or for a GIF an upper bound of its frame count (every image block but the first follows a block
    terminator, so it counts the bytes b"\\x00," and adds one): a GIF's frames are all decoded by TensorFlow, so the
    pixel bound applies to all of them. Raises ValueError(NOT_AN_IMAGE) for anything else; export.py parses the
    same fields with graph ops.

    Example:
    >>> image_header(b"GIF89a" + bytes([3, 0, 2, 0]) + bytes(10))[:3]
    ('GIF', 3, 2)
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return "PNG", width, height, 1
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return "GIF", width, height, data.count(b"\x00,") + 1
    if data[:2] == b"BM" and len(data) >= 26:
        header_size = struct.unpack("<I", data[14:18])[0]
        if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            width, height = struct.unpack("<hh", data[18:22])
        else:
            width, height = struct.unpack("<ii", data[18:26])
        return "BMP", abs(width), abs(height), 1
    if data[:2] == b"\xff\xd8":
        size = _jpeg_size(data)
        if size:
            return ("JPEG", *size, 1)
    raise ValueError(NOT_AN_IMAGE)


def _jpeg_size(data):
    """(width, height) from a JPEG's start-of-frame segment, or None."""
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            position += 2
            continue
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + length
    return None


def image_bytes(data):
    """Check one encoded image before it is decoded: size of the file, format, pixels. Returns its format."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(IMAGE_FILE_TOO_LARGE)
    kind, width, height, frames = image_header(data)
    if width * height * frames > MAX_IMAGE_PIXELS:
        raise ValueError(IMAGE_TOO_LARGE)
    if width == 0 or height == 0:
        raise ValueError(NOT_AN_IMAGE)
    return kind
