"""One battery of bad inputs, decided the same way on every surface (keras_tx.validation; README, "Limits").

Each case says how to give one input on each surface that takes it, and `expect`, a piece of the one sentence
that every surface answers with (None: the input is fine and every surface must accept it). The surfaces run the
battery in the test module that has their fixtures:

    cli     tests/test_bad_input.py         `keras_tx.cli.main(argv)`: exit status 2, one line on stderr
    api     tests/test_bad_input.py         a Python call: ValueError
    export  tests/test_export.py            the SavedModel's signature, in a process with TensorFlow only:
                                            InvalidArgument
    demo    tests/apps/test_demo.py         the Streamlit page (AppTest): one error message, no exception

Surfaces name the model directories they need with placeholders: "{gpt}" (a character-level GPT, context 16,
vocabulary = the characters of tests.test_export.TEXT), "{bert}" (max_length 24, max_predictions 20), "{resnet}"
(grey 16x16, 3 classes), "{translation}" (max_source_length 8), and files: "{image:NAME}" (IMAGES[NAME] written to
a file), "{dir}" (an existing directory).
"""

import io
import struct
from collections import namedtuple

import numpy as np
from PIL import Image

Case = namedtuple("Case", "id expect cli api export demo", defaults=(None, None, None, None))

NOT_UTF8 = "f\udce4hrt"  # what Python makes of the bytes b"f\xe4hrt" (Latin-1, not UTF-8) on a command line
NOT_UTF8_BYTES = b"f\xe4hrt"
LONG_TEXT = "e" * 10_001


def _encode(image, format, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    return buffer.getvalue()


def _cmyk_jpeg():
    pixels = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    return _encode(Image.fromarray(pixels).convert("CMYK"), "JPEG")


def _animated_gif():
    """Two 4000 x 4000 frames: 32 megapixels decoded (TensorFlow decodes every frame), from a few kB."""
    frames = [Image.new("P", (4000, 4000), i) for i in range(2)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


def _bmp_header_bomb():
    """A BMP header that claims 30000 x 30000 pixels, with no pixels behind it."""
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 30000, 30000, 1, 24,
                                                                       0, 0, 0, 0, 0, 0)


IMAGES = {
    "bomb": lambda: _encode(Image.new("1", (20000, 20000)), "PNG"),  # 400 million pixels in a few kB
    "gif_bomb": _animated_gif,
    "bmp_bomb": _bmp_header_bomb,
    "text": lambda: b"this is not a picture",
    "webp": lambda: _encode(Image.new("RGB", (16, 16), (200, 10, 10)), "WEBP"),
    "cmyk": _cmyk_jpeg,
    "grey": lambda: _encode(Image.new("L", (16, 16), 128), "PNG"),
    "huge_file": lambda: _encode(Image.new("L", (16, 16), 1), "PNG") + b"\0" * (20 * 2**20),
}


def _generate(gpt, prompt="Be", max_new_tokens=5, **sampling):
    """The Python API of text generation: the task's prompt_ids + generate_ids, as the CLI and the demo use them."""
    ids, _ = gpt.prompt_ids(prompt, max_new_tokens)
    return gpt.generate_ids(ids, max_new_tokens, **sampling)


def _gen_call(prompt="Be", max_new_tokens=5, temperature=0.0, seed=0):
    return ("gpt", "generate", {"prompt": prompt, "max_new_tokens": np.int32(max_new_tokens),
                                "temperature": np.float32(temperature), "seed": np.int64(seed)})


def _fill_call(text, top_k=3):
    return ("bert", "fill_mask", {"text": text, "top_k": np.int32(top_k)})


def _images_call(*names):
    return ("resnet", "classify", {"image_bytes": np.array([IMAGES[n]() for n in names] or [], dtype=object)})


def _translate_call(*texts):
    return ("translation", "translate", {"text": np.array(list(texts), dtype=object)})


GEN = ["generate", "{gpt}", "--max-new-tokens", "5"]
FILL = ["fill-mask", "{bert}"]
CLASSIFY = ["classify", "{resnet}"]
TRANSLATE = ["translate", "{translation}"]

CASES = [
    # --- text generation ------------------------------------------------------------------------------------
    Case("beams_unbounded", "from 1 to 16",
         cli=GEN + ["--prompt", "Be", "--sampler", "beam", "--num-beams", "100000"],
         api=lambda m: m["gpt"].model.generate([1, 2], 3, sampler="beam", num_beams=100000)),
    Case("new_tokens_too_many", "from 1 to 2,000", cli=["generate", "{gpt}", "--prompt", "Be",
                                                        "--max-new-tokens", "5000"],
         api=lambda m: _generate(m["gpt"], max_new_tokens=5000), export=_gen_call(max_new_tokens=5000)),
    Case("new_tokens_zero", "from 1 to 2,000", cli=["generate", "{gpt}", "--prompt", "Be", "--max-new-tokens", "0"],
         api=lambda m: _generate(m["gpt"], max_new_tokens=0), export=_gen_call(max_new_tokens=0)),
    Case("new_tokens_negative", "from 1 to 2,000",
         cli=["generate", "{gpt}", "--prompt", "Be", "--max-new-tokens", "-4"],
         api=lambda m: m["gpt"].model.generate([1, 2], -4), export=_gen_call(max_new_tokens=-4)),
    Case("temperature_nan", "finite", cli=GEN + ["--prompt", "Be", "--temperature", "nan"],
         api=lambda m: _generate(m["gpt"], sampler="random", temperature=float("nan")),
         export=_gen_call(temperature=float("nan"))),
    Case("temperature_negative", "finite", cli=GEN + ["--prompt", "Be", "--temperature", "-1"],
         api=lambda m: _generate(m["gpt"], sampler="random", temperature=-1.0), export=_gen_call(temperature=-1)),
    Case("seed_negative", "must be an integer from 0", cli=GEN + ["--prompt", "Be", "--seed", "-5"],
         api=lambda m: _generate(m["gpt"], sampler="random", seed=-5), export=_gen_call(temperature=1, seed=-5)),
    Case("prompt_unknown_characters", "vocabulary", cli=GEN + ["--prompt", "to be Ωmega"],
         api=lambda m: _generate(m["gpt"], "to be Ωmega"), export=_gen_call("€Be✓"),
         demo=("generate", "to be Ωmega")),
    Case("prompt_only_unknown_characters", "vocabulary", cli=GEN + ["--prompt", "€✓"],
         api=lambda m: _generate(m["gpt"], "€✓"), export=_gen_call("€✓")),
    Case("prompt_empty", "empty", cli=GEN + ["--prompt", ""], api=lambda m: _generate(m["gpt"], ""),
         export=_gen_call(""), demo=("generate", "")),
    Case("prompt_not_utf8", "UTF-8", cli=GEN + ["--prompt", NOT_UTF8], api=lambda m: _generate(m["gpt"], NOT_UTF8),
         export=_gen_call(NOT_UTF8_BYTES)),
    Case("prompt_too_long", "10,000 characters", cli=GEN + ["--prompt", LONG_TEXT],
         api=lambda m: _generate(m["gpt"], LONG_TEXT), export=_gen_call(LONG_TEXT), demo=("generate", LONG_TEXT)),
    Case("token_ids_above_vocabulary", "Token ids must be in", api=lambda m: m["gpt"].model.generate([1, 999], 3),
         export=("gpt", "serving_default", {"token_ids": np.array([[1, 999]], "int32")})),
    Case("token_ids_negative", "Token ids must be in", api=lambda m: m["gpt"].model.generate([-1, 2], 3),
         export=("gpt", "serving_default", {"token_ids": np.array([[-1, 2]], "int32")})),
    Case("top_k_zero", "integer >= 1", cli=GEN + ["--prompt", "Be", "--top-k", "0"],
         api=lambda m: _generate(m["gpt"], sampler="top_k", temperature=1.0, top_k=0)),
    Case("top_p_above_one", "<= 1", cli=GEN + ["--prompt", "Be", "--sampler", "top_p", "--top-p", "1.5"],
         api=lambda m: _generate(m["gpt"], sampler="top_p", temperature=1.0, top_p=1.5)),
    # --- masked prediction ----------------------------------------------------------------------------------
    Case("mask_missing", "no [MASK]", cli=FILL + ["the cat sat on the mat"],
         api=lambda m: m["bert"].fill_mask("the cat sat on the mat"), export=_fill_call("the cat sat on the mat"),
         demo=("mask", "the cat sat on the mat .")),
    Case("mask_lowercase_is_a_mask", None, cli=FILL + ["the [mask] sat on the mat"],
         api=lambda m: m["bert"].fill_mask("the [mask] sat on the mat"), export=_fill_call("the [mask] sat on the mat"),
         demo=("mask", "the cat [mask] on the mat .")),
    Case("mask_text_empty", "empty", cli=FILL + [""], api=lambda m: m["bert"].fill_mask("   "),
         export=_fill_call("   "), demo=("mask", "   ")),
    Case("mask_text_not_utf8", "UTF-8", cli=FILL + ["a \udcff [MASK] movie"],
         api=lambda m: m["bert"].fill_mask("a \udcff [MASK] movie"), export=_fill_call(b"a \xff [MASK] movie")),
    Case("mask_too_many", "[MASK]s are allowed", cli=FILL + ["[MASK] " * 21],
         api=lambda m: m["bert"].fill_mask("[MASK] " * 21), export=_fill_call("[MASK] " * 21),
         demo=("mask", "[MASK] [MASK] [MASK] [MASK]")),
    Case("mask_text_longer_than_the_model", "max_length=24", cli=FILL + ["the cat " * 20 + "[MASK]"],
         api=lambda m: m["bert"].fill_mask("the cat " * 20 + "[MASK]"), export=_fill_call("the cat " * 20 + "[MASK]")),
    Case("mask_text_too_long", "10,000 characters", cli=FILL + [LONG_TEXT + " [MASK]"],
         api=lambda m: m["bert"].fill_mask(LONG_TEXT + " [MASK]"), export=_fill_call(LONG_TEXT + " [MASK]")),
    Case("mask_top_k_zero", "integer >= 1", cli=FILL + ["the [MASK] sat", "--top-k", "0"],
         api=lambda m: m["bert"].fill_mask("the [MASK] sat", top_k=0), export=_fill_call("the [MASK] sat", 0)),
    # --- image classification -------------------------------------------------------------------------------
    Case("classify_top_k_zero", "integer >= 1", cli=CLASSIFY + ["{image:grey}", "--top-k", "0"],
         api=lambda m: m["classify"](["{image:grey}"], top_k=0)),
    Case("classify_top_k_negative", "integer >= 1", cli=CLASSIFY + ["{image:grey}", "--top-k", "-2"],
         api=lambda m: m["classify"](["{image:grey}"], top_k=-2)),
    Case("decompression_bomb", "too large", cli=CLASSIFY + ["{image:bomb}"],
         api=lambda m: m["classify"](["{image:bomb}"]),
         export=_images_call("bomb"), demo=("upload", "bomb")),
    Case("gif_bomb", "too large", cli=CLASSIFY + ["{image:gif_bomb}"],
         api=lambda m: m["classify"](["{image:gif_bomb}"]),
         export=_images_call("gif_bomb"), demo=("upload", "gif_bomb")),
    Case("bmp_header_bomb", "too large", cli=CLASSIFY + ["{image:bmp_bomb}"],
         api=lambda m: m["classify"](["{image:bmp_bomb}"]), export=_images_call("bmp_bomb"),
         demo=("upload", "bmp_bomb")),
    Case("not_an_image", "not an image", cli=CLASSIFY + ["{image:text}"], api=lambda m: m["classify"](["{image:text}"]),
         export=_images_call("text"), demo=("upload", "text")),
    Case("webp_is_not_decodable_everywhere", "not an image", cli=CLASSIFY + ["{image:webp}"],
         api=lambda m: m["classify"](["{image:webp}"]), export=_images_call("webp"), demo=("upload", "webp")),
    Case("cmyk_jpeg_is_an_image", None, cli=CLASSIFY + ["{image:cmyk}"], api=lambda m: m["classify"](["{image:cmyk}"]),
         export=_images_call("cmyk"), demo=("upload", "cmyk")),
    Case("image_file_too_large", "up to 20 MB", cli=CLASSIFY + ["{image:huge_file}"],
         api=lambda m: m["classify"](["{image:huge_file}"]), export=_images_call("huge_file"),
         demo=("upload", "huge_file")),
    Case("too_many_images", "At most 64", cli=CLASSIFY + ["{image:grey}"] * 65,
         api=lambda m: m["classify"](["{image:grey}"] * 65), export=_images_call(*["grey"] * 65)),
    Case("no_images_get_no_answer", None, api=lambda m: m["classify"]([]), export=_images_call()),
    Case("image_is_a_directory", "is not a file", cli=CLASSIFY + ["{dir}"], api=lambda m: m["classify"](["{dir}"])),
    Case("image_missing", "no such file", cli=CLASSIFY + ["{dir}/missing.png"],
         api=lambda m: m["classify"](["{dir}/missing.png"])),
    # --- translation ----------------------------------------------------------------------------------------
    Case("translate_not_utf8", "UTF-8", cli=TRANSLATE + ["Ein Mann " + NOT_UTF8],
         api=lambda m: m["translator"].translate("Ein Mann " + NOT_UTF8),
         export=_translate_call(b"Ein Mann " + NOT_UTF8_BYTES)),
    Case("translate_no_known_word", "no word the model knows", cli=TRANSLATE + ["∑∑∑ ☃☃"],
         api=lambda m: m["translator"].translate("∑∑∑ ☃☃"), export=_translate_call("ein hund", "∑∑∑ ☃☃"),
         demo=("translate", "☃☃ ☃")),
    Case("translate_empty", "empty", cli=TRANSLATE + ["  "], api=lambda m: m["translator"].translate(["ein hund", ""]),
         export=_translate_call("ein hund", "   "), demo=("translate", "")),
    Case("translate_longer_than_the_model", "max_source_length=8", cli=TRANSLATE + ["ein hund " * 6],
         api=lambda m: m["translator"].translate("ein hund " * 6), export=_translate_call("ein hund " * 6)),
    Case("translate_too_long", "10,000 characters", cli=TRANSLATE + [LONG_TEXT],
         api=lambda m: m["translator"].translate(LONG_TEXT), export=_translate_call(LONG_TEXT)),
    Case("translate_beams_unbounded", "from 1 to 16", cli=TRANSLATE + ["ein hund", "--num-beams", "17"],
         api=lambda m: m["translator"].translate("ein hund", sampler="beam", num_beams=17)),
    Case("translate_too_many_texts", "At most 64", cli=TRANSLATE + ["ein hund"] * 65,
         api=lambda m: m["translator"].translate(["ein hund"] * 65), export=_translate_call(*["ein hund"] * 65)),
    Case("translate_nothing_gets_nothing", None, api=lambda m: m["translator"].translate([]),
         export=_translate_call()),
]

BY_SURFACE = {surface: [case for case in CASES if getattr(case, surface) is not None]
              for surface in ("cli", "api", "export", "demo")}


def ids(cases):
    return [case.id for case in cases]
