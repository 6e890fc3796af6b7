"""The keras-tx demo: the trained models of saved_models/ in a browser.

    keras-tx demo                      # or: streamlit run apps/demo.py
    keras-tx demo --models PATH...     # folders of model directories, or model directories (also: KERAS_TX_MODELS)
    keras-tx demo --models saved_models models/gpt2   # the shipped models and one `keras-tx import` wrote

Pages: text generation (GPT, streamed), masked prediction (BERT, with its attention), image classification
(ViT and ResNet side by side, with the ViT's attention rollout) and, where such a model is present, image
completion (image GPT) and translation (encoder-decoder Transformer). Every bad input is answered on the page;
a missing model shows how to train it. The non-UI work lives in apps/demo_lib.py.
"""

import logging
import os
import tempfile
import time

import altair as alt
import pandas as pd
import streamlit as st

from keras_tx.quiet import muted_stderr

with muted_stderr():  # TensorFlow's start-up lines (CUDA probes on a machine without a GPU) are not the demo's errors
    import tensorflow as tf

    tf.config.list_logical_devices()

import demo_lib as lib  # noqa: E402
from keras_tx import tasks  # noqa: E402
from keras_tx.data.tokenizers import CharTokenizer  # noqa: E402
log = logging.getLogger("keras_tx.demo")


# ------------------------------------------------------------------------------------------- loading, cached


@st.cache_resource(show_spinner="Loading the model ...", max_entries=16)
def load(kind, path, version):
    """The task of a model directory (`keras_tx.tasks`), loaded once per server (`version` is the file's mtime: a
    new file is reloaded)."""
    return tasks.load(path, kind)


@st.cache_resource(show_spinner="Loading the test images ...", max_entries=4)
def test_images(dataset):
    return lib.test_images(dataset)


def load_or_explain(folder, name, kind):
    """The loaded model directory `folder/name`, or None after saying why it is not there and how to make it."""
    path = lib.model_path(folder, name)
    try:
        return load(kind, path, lib.model_version(folder, name))
    except ValueError as error:
        st.error(f"The model `{name}` could not be loaded: {error}")
        command = lib.training_command(folder, name)
        if command:
            st.markdown("Train it again with:")
            st.code(command, language="bash", wrap_lines=True)
        return None


def missing(folder, name, what):
    st.warning(f"No {what} yet: `{lib.model_path(folder, name)}` does not exist. Train it with:")
    st.code(lib.training_command(folder, name), language="bash", wrap_lines=True)


def choose(folder, kind, preferred, label, architecture=None):
    """The name of the model directory to use for one role (a sidebar choice when there are several), or None."""
    names = lib.models_of_kind(folder, kind, preferred)
    if architecture:
        metadata = lib.list_models(folder)
        names = [n for n in names if architecture(metadata[n].get("architecture"))]
    if not names:
        return None
    if len(names) == 1:
        return names[0]
    return st.sidebar.selectbox(label, names, key=f"model_{label}")


def describe(name, metadata):
    """The sidebar's card for one loaded model: what it is, what it was trained on, how good it is."""
    sidebar = st.sidebar
    sidebar.markdown(f"**{name}** · {metadata.get('architecture', metadata.get('kind', '?'))}")
    parameters = metadata.get("parameters")
    facts = [f"{parameters:,} parameters" if isinstance(parameters, int) else None,
             f"data: {metadata['dataset']}" if metadata.get("dataset") else None,
             f"trained {metadata['date']}" if metadata.get("date") else None]
    sidebar.caption(" · ".join(f for f in facts if f))
    for label, value in lib.quality(metadata):
        digits = 2 if "BLEU" in label else 4  # BLEU is quoted to two decimals; losses and accuracies to four
        sidebar.metric(label, f"{value:.{digits}f}" if isinstance(value, float) else value)
    if metadata.get("command"):
        with sidebar.expander("command"):
            st.code(metadata["command"], language="bash", wrap_lines=True)


def probability_chart(pairs, title):
    """Horizontal bars of (label, probability), most likely on top, each with its percentage."""
    frame = pd.DataFrame(pairs, columns=["label", "probability"])
    top = min(1.0, max(0.05, frame.probability.max() * 1.15))  # room for the labels, never past 100%
    base = alt.Chart(frame).encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, top])),
        y=alt.Y("label:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
        tooltip=["label", alt.Tooltip("probability:Q", format=".3f")],
    )
    bars = base.mark_bar()
    text = base.mark_text(align="left", dx=3).encode(text=alt.Text("probability:Q", format=".1%"))
    return alt.layer(bars, text).properties(title=title, height=30 * len(pairs))


# ---------------------------------------------------------------------------------------------------- pages


def text_page(folder):
    st.header("Text generation")
    loaded = page_model(folder, "language_model", "language_model", "Language model", "language model",
                        preferred="gpt_shakespeare")
    if loaded is None:
        return
    tokenizer, metadata, context = loaded.tokenizer, loaded.metadata, loaded.context
    units = "characters" if isinstance(tokenizer, CharTokenizer) else "byte-level BPE tokens"
    origin = f" imported from `{metadata['preset']}`" if metadata.get("preset") else ""
    st.caption(f"A {metadata.get('architecture', 'model')}{origin}: {tokenizer.vocabulary_size:,} {units}"
               + (f", context of {context} tokens (longer prompts keep their end)." if context else "."))

    prompt = st.text_area("Prompt", value=default_prompt(tokenizer), key="prompt", height=100)
    left, middle, right = st.columns(3)
    max_new_tokens = left.number_input("Max new tokens", 1, lib.MAX_NEW_TOKENS, 200, key="max_new_tokens",
                                       help=f"1 to {lib.MAX_NEW_TOKENS}.")
    sampler = middle.selectbox("Sampler", ["greedy", "top_k", "top_p", "beam"], index=1, key="sampler")
    seed = right.number_input("Seed", 0, 2**31 - 1, 0, key="seed", help="The same seed gives the same text.")
    left, middle, right = st.columns(3)
    temperature = left.slider("Temperature", 0.1, 2.0, 1.0, 0.05, key="temperature",
                              disabled=sampler in ("greedy", "beam"))
    top_k = middle.slider("Top k", 1, min(100, tokenizer.vocabulary_size), min(10, tokenizer.vocabulary_size),
                          key="top_k", disabled=sampler != "top_k")
    top_p = right.slider("Top p", 0.05, 1.0, 0.9, 0.05, key="top_p", disabled=sampler != "top_p")
    num_beams = st.slider("Beams", 2, 8, 4, key="num_beams") if sampler == "beam" else None

    if not st.button("Generate", type="primary", key="generate"):
        return
    try:
        ids, note = loaded.prompt_ids(prompt, int(max_new_tokens))
    except ValueError as error:  # empty, or characters the model has never seen (named)
        st.error(str(error))
        return
    if note:
        st.info(note)
    sampling = lib.sampling_arguments(sampler, temperature, top_k, top_p, num_beams, int(seed))
    box, text, rate = st.empty(), loaded.decode(ids), lib.Rate()
    box.code(text, language=None, wrap_lines=True)
    shown = time.perf_counter()
    for piece, count in loaded.stream(ids, int(max_new_tokens), **sampling):
        rate.tick(count)
        text += piece
        if time.perf_counter() - shown > 0.05:  # at most 20 page updates a second: the browser keeps up
            box.code(text, language=None, wrap_lines=True)
            shown = time.perf_counter()
    box.code(text, language=None, wrap_lines=True)
    st.caption(rate.summary())


def default_prompt(tokenizer):
    for prompt in ("ROMEO:", "The ", "the "):
        try:
            tokenizer.encode(prompt)
            return prompt
        except ValueError:
            continue
    return tokenizer.vocabulary[0]


def mask_page(folder):
    st.header("Masked prediction")
    loaded = page_model(folder, "masked_lm", "masked_lm", "Masked language model", "masked language model",
                        preferred="bert_mlm")
    if loaded is None:
        return
    model = loaded.model
    st.caption(f"BERT reads the whole sentence, left and right, and guesses each [MASK] (at most "
               f"{model.max_predictions} per sentence).")
    text = st.text_input("A sentence with one or more [MASK]", "the movie was [MASK] and the actors were [MASK] .",
                         key="masked_text")
    top_k = st.slider("Candidates per [MASK]", 1, 10, 5, key="mask_top_k")
    try:
        candidates, tokens, attention = lib.fill_masks(loaded, text, top_k)
    except ValueError as error:  # empty, no [MASK], too many, too long (keras_tx.validation's sentences)
        st.error(str(error))
        return
    columns = st.columns(min(len(candidates), 3))
    for i, pairs in enumerate(candidates):
        columns[i % len(columns)].altair_chart(probability_chart(pairs, f"[MASK] {i + 1}"), width="stretch",
                                              height=30 * len(pairs) + 90)

    st.subheader("Attention")
    left, right = st.columns(2)
    num_layers, num_heads = len(attention), attention[0].shape[0]
    layer = left.selectbox("Layer", list(range(1, num_layers + 1)), key="layer")
    head = right.selectbox("Head", ["mean of the heads"] + list(range(1, num_heads + 1)), key="head")
    weights = attention[layer - 1]
    weights = weights.mean(axis=0) if isinstance(head, str) else weights[head - 1]  # (T, T)
    labels = [f"{i} {token}" for i, token in enumerate(tokens)]
    frame = pd.DataFrame(
        [(labels[q], labels[k], float(weights[q, k])) for q in range(len(labels)) for k in range(len(labels))],
        columns=["query", "key", "weight"],
    )
    heat = alt.Chart(frame).mark_rect().encode(
        x=alt.X("key:N", sort=labels, title="attended token (key)"),
        y=alt.Y("query:N", sort=labels, title="token (query)"),
        color=alt.Color("weight:Q", scale=alt.Scale(scheme="blues", domain=[0, float(weights.max())])),
        tooltip=["query", "key", alt.Tooltip("weight:Q", format=".3f")],
    )
    st.altair_chart(heat.properties(height=24 * len(labels)), width="stretch", height=24 * len(labels) + 120)
    st.caption("Row t: how token t spreads its attention over the sentence in this layer and head (rows sum to 1).")


def image_page(folder):
    st.header("Image classification")
    roles = [
        ("vit_fashion_mnist", "ViT", lambda a: a == "vit"),
        ("resnet_fashion_mnist", "ResNet", lambda a: a != "vit"),
    ]
    classifiers = {}
    columns = st.columns(2)
    for (preferred, label, architecture), column in zip(roles, columns):
        with column:
            name = choose(folder, "image_classifier", preferred, label, architecture)
            if name is None:
                missing(folder, preferred, f"{label} image classifier")
                continue
            loaded = load_or_explain(folder, name, "image_classifier")
            if loaded is not None:
                classifiers[label] = loaded
                describe(name, loaded.metadata)
    if not classifiers:
        return
    metadata = next(iter(classifiers.values())).metadata

    source = st.radio("Image", ["A test image", "Upload an image"], horizontal=True, key="image_source")
    with tempfile.TemporaryDirectory(prefix="keras-tx-demo-") as workdir:
        if source == "Upload an image":
            upload = st.file_uploader("A PNG or JPEG image", type=lib.IMAGE_TYPES, key="upload",
                                      max_upload_size=lib.MAX_UPLOAD_MB)
            if upload is None:
                st.info("Upload an image to classify it.")
                return
            try:
                path = lib.save_upload(upload, workdir)
            except ValueError as error:
                st.error(str(error))
                return
            shown_name, truth = upload.name, None
        else:
            try:
                images, labels, names = test_images(metadata.get("dataset", "digits"))
            except ValueError as error:
                st.error(f"The test images of {metadata.get('dataset')} are not available here ({error}). "
                         "Upload an image instead.")
                return
            index = st.number_input(f"Test image (0 to {len(images) - 1})", 0, len(images) - 1, 0, key="test_index")
            path = lib.save_array_image(images[int(index)], workdir)
            shown_name, truth = f"test image {int(index)}", names[int(labels[int(index)])]
        show_predictions(classifiers, path, shown_name, truth)


def show_predictions(classifiers, path, shown_name, truth):
    try:
        predictions = lib.classify(classifiers, path)
    except ValueError as error:  # not an image, or one too large to decode safely
        st.error(str(error).replace(path, shown_name))
        return
    metadata = next(iter(classifiers.values())).metadata
    note = lib.describe_image(path, metadata["image_shape"])
    if note and truth is None:
        st.info(note)
    if truth is not None:
        st.markdown(f"True class of {shown_name}: **{truth}**")
    charts, images = st.columns(2), st.columns(2)
    for label, column in zip(["ViT", "ResNet"], charts):
        if label in predictions:
            pairs = predictions[label]
            column.altair_chart(probability_chart(pairs, f"{label}: {pairs[0][0]} ({pairs[0][1]:.0%})"),
                                width="stretch", height=30 * len(pairs) + 90)
    image, shown = lib.model_view(metadata, path)
    images[0].image(shown, caption="what the models see", width=280)
    if "ViT" in classifiers:
        overlay = lib.rollout_overlay(classifiers["ViT"].model, image)
        images[1].image(overlay, caption="ViT attention rollout: red = where the class token's attention flows",
                        width=280)


def page_model(folder, kinds, kind, label, what, preferred=None):
    """What a page's model loads to (its last item the metadata), described in the sidebar; None when there is
    none: then a shipped model's page shows the command that trains it, an optional page a short note."""
    name = choose(folder, kinds, preferred, label)
    if name is None:
        if preferred:
            missing(folder, preferred, what)
        else:
            st.info(f"No {what} in this folder.")
        return None
    loaded = load_or_explain(folder, name, kind)
    if loaded is not None:
        describe(name, loaded.metadata)
    return loaded


def completion_page(folder):
    st.header("Image completion")
    loaded = page_model(folder, lib.IMAGE_GPT_KINDS, "image_gpt", "Image GPT", "image GPT model")
    if loaded is None:
        return
    model, metadata = loaded.model, loaded.metadata
    try:
        images, _, _ = test_images(metadata.get("dataset", "digits"))
    except ValueError as error:
        st.error(f"The test images of {metadata.get('dataset')} are not available here ({error}).")
        return
    height = model.grid_size[0]
    st.caption(f"Image GPT reads pixels as tokens, row by row, on a {height}x{model.grid_size[1]} grid of "
               f"{model.palette.num_colors} colours: keep the top rows of a test image and it draws the rest.")
    left, middle, right = st.columns(3)
    index = left.number_input(f"Test image (0 to {len(images) - 1})", 0, len(images) - 1, 0, key="igpt_index")
    keep_rows = middle.slider("Rows given", 0, height, height // 2, key="keep_rows")
    num_samples = right.slider("Completions", 1, 4, 3, key="num_samples")
    left, right = st.columns(2)
    temperature = left.slider("Temperature", 0.1, 2.0, 1.0, 0.05, key="igpt_temperature")
    seed = right.number_input("Seed", 0, 2**31 - 1, 0, key="igpt_seed")
    if not st.button("Complete", type="primary", key="complete"):
        return
    original, completions = lib.complete_image(model, images[int(index)], keep_rows, num_samples, temperature,
                                               int(seed))
    st.image([original] + completions, caption=["input (quantized)"] + [f"completion {i + 1}" for i in
                                                                        range(len(completions))])


def translation_page(folder):
    st.header("Translation")
    loaded = page_model(folder, lib.TRANSLATION_KINDS, "translation", "Translation model", "translation model")
    if loaded is None:
        return
    st.caption(f"An encoder-decoder Transformer: the encoder reads the whole source, the decoder writes the "
               f"translation token by token (sources up to {loaded.model.max_source_length} tokens).")
    text = st.text_area("Source text", "Ein Mann fährt Fahrrad.", key="source_text", height=80)
    left, middle, right = st.columns(3)
    sampler = left.radio("Search", ["greedy", "beam"], horizontal=True, key="translation_sampler")
    num_beams = middle.slider("Beams", 2, 8, 4, key="translation_beams", disabled=sampler != "beam")
    truncate = right.checkbox("Cut a long text to fit", key="truncate")
    if not st.button("Translate", type="primary", key="translate"):
        return
    try:
        translation = loaded.translate(text, sampler=sampler, num_beams=num_beams, truncate=truncate, batch_size=1)
    except ValueError as error:  # empty, or longer than the model reads
        st.error(str(error))
        return
    st.markdown("**Translation**")
    st.code(translation, language=None, wrap_lines=True)


def sentiment_page(folder):
    st.header("Sentiment")
    loaded = page_model(folder, lib.TEXT_CLASSIFIER_KINDS, "text_classifier", "Text classifier", "text classifier",
                        preferred="sentiment_sst2")
    if loaded is None:
        return
    names = loaded.class_names
    st.caption(f"A BERT fine-tuned to tell {' from '.join(names)}: it reads the sentence ([CLS] its tokens [SEP], up "
               f"to {loaded.sequence_length} tokens) and classifies the final state of [CLS].")
    text = st.text_area("A sentence", "a gorgeous , witty and moving film", key="sentiment_text", height=80)
    try:
        [(_, pairs)] = loaded.classify([text], top_k=len(names))
    except ValueError as error:  # empty, not UTF-8, too long (keras_tx.validation's sentences)
        st.error(str(error))
        return
    st.altair_chart(probability_chart(pairs, "class probabilities"), width="stretch", height=30 * len(pairs) + 90)


PAGES = {
    "Text generation": text_page,
    "Masked prediction": mask_page,
    "Image classification": image_page,
    "Image completion": completion_page,
    "Translation": translation_page,
    "Sentiment": sentiment_page,
}
OPTIONAL_PAGES = {"Image completion": lib.IMAGE_GPT_KINDS, "Translation": lib.TRANSLATION_KINDS,
                  "Sentiment": lib.TEXT_CLASSIFIER_KINDS}


def main():
    st.set_page_config(page_title="keras-tx demo", layout="wide")
    folder = lib.models_dir()
    st.sidebar.title("keras-tx demo")
    st.sidebar.caption("Models from " + ", ".join(f"`{path}`" for path in folder.split(os.pathsep)))
    pages = [p for p in PAGES if p not in OPTIONAL_PAGES or lib.models_of_kind(folder, OPTIONAL_PAGES[p])]
    page = st.sidebar.radio("Page", pages, key="page")
    st.sidebar.divider()
    try:
        PAGES[page](folder)
    except Exception as error:  # a bug, not a user's mistake: say so on the page, keep the trace in the log
        log.exception("demo page %s failed", page)
        st.error(f"Something went wrong on this page ({type(error).__name__}: {error}). The server log has details.")


main()
