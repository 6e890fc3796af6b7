"""The model battery (tests/battery.py, `run_model_battery`) on every model keras_tx.models exports, each tiny:
config round trip, `.keras` reload with safe_mode, XLA, one fit step, mixed precision.

A new model class is not done until it has an entry in CASES: `test_every_exported_model_has_a_battery_entry`
fails until then.
"""

import inspect

import keras
import numpy as np
import pytest

import keras_tx.models
from keras_tx.models import (
    BERT,
    GPT,
    BERTClassifier,
    BERTMaskedLM,
    GPTClassifier,
    ImageGPT,
    MaskedCrossentropy,
    Palette,
    ResNet,
    RNNLanguageModel,
    Seq2SeqTransformer,
    ViT,
)
from tests.battery import assert_policy_round_trip, run_model_battery

RNG = np.random.default_rng(0)
B, T, V = 2, 6, 13  # batch, sequence length, vocabulary
IDS = RNG.integers(1, V, size=(B, T)).astype("int32")
NEXT_IDS = RNG.integers(1, V, size=(B, T)).astype("int32")
LABELS = np.array([0, 2], "int32")
PADDING = np.array([[1] * T, [1] * (T - 2) + [0] * 2], "int32")  # the second sequence padded on the right
BERT_INPUTS = {"token_ids": IDS * PADDING, "segment_ids": np.zeros((B, T), "int32"), "padding_mask": PADDING}
IMAGES = RNG.random((B, 8, 8, 1)).astype("float32")
SPARSE_CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
GPT_CONFIG = dict(vocabulary_size=V, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_length=8)
BERT_CONFIG = dict(vocabulary_size=V, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_length=8)


def _gpt(dtype=None):
    return GPT(**GPT_CONFIG, dtype=dtype)


def _bert(dtype=None):
    return BERT(**BERT_CONFIG, dtype=dtype)


# id -> (model_factory(dtype=None), inputs, targets, loss, extra run_model_battery arguments)
CASES = {
    "GPT": (_gpt, IDS, NEXT_IDS, SPARSE_CE, dict(expected_output_shape=(B, T, V))),
    "GPTClassifier": (
        lambda dtype=None: GPTClassifier(_gpt(dtype), num_classes=3),
        {"token_ids": IDS * PADDING, "padding_mask": PADDING},
        LABELS,
        SPARSE_CE,
        # Its head takes the global dtype policy, not the backbone's (BERTClassifier's takes the backbone's):
        # with a mixed backbone the logits come out in float32.
        dict(expected_output_shape=(B, 3), mixed_precision_output_dtype="float32"),
    ),
    "BERT": (
        _bert,
        BERT_INPUTS,
        {"sequence_output": RNG.normal(size=(B, T, 8)), "pooled_output": RNG.normal(size=(B, 8))},
        "mse",
        {},
    ),
    "BERTMaskedLM": (
        lambda dtype=None: BERTMaskedLM(_bert(dtype)),
        {**BERT_INPUTS, "mask_positions": np.array([[1, 3], [0, 2]], "int32")},
        np.array([[4, 5], [6, 7]], "int32"),
        SPARSE_CE,
        # The masked-LM head reads the sequence output only: the [CLS] pooler gets no gradient.
        dict(expected_output_shape=(B, 2, V), zero_gradient_weights=("key/bias", "pooler/kernel", "pooler/bias")),
    ),
    "BERTClassifier": (
        lambda dtype=None: BERTClassifier(_bert(dtype), num_classes=3),
        BERT_INPUTS,
        LABELS,
        SPARSE_CE,
        dict(expected_output_shape=(B, 3)),
    ),
    "ViT": (
        lambda dtype=None: ViT(8, 4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3,
                               num_channels=1, dtype=dtype),
        IMAGES,
        LABELS,
        SPARSE_CE,
        dict(expected_output_shape=(B, 3)),
    ),
    "ResNet": (
        # zero_init_residual=False: a zero BatchNorm scale would give its block's convolutions no gradient.
        lambda dtype=None: ResNet((8, 8, 1), num_classes=3, width=4, blocks_per_stage=(1, 1),
                                  zero_init_residual=False, dtype=dtype),
        IMAGES,
        LABELS,
        SPARSE_CE,
        dict(expected_output_shape=(B, 3)),
    ),
    "ImageGPT": (
        lambda dtype=None: ImageGPT(Palette([[0.0], [0.5], [1.0]]), image_size=2, num_layers=1, num_heads=2,
                                    hidden_dim=8, intermediate_dim=16, dtype=dtype),
        np.array([[3, 0, 1, 2], [3, 2, 2, 0]], "int32"),  # the start token (3), then pixels
        np.array([[0, 1, 2, 1], [2, 2, 0, 0]], "int32"),
        SPARSE_CE,
        dict(expected_output_shape=(B, 4, 4)),
    ),
    **{
        f"RNNLanguageModel-{cell}": (
            lambda dtype=None, cell=cell: RNNLanguageModel(V, cell=cell, embedding_dim=4, units=8, dtype=dtype),
            IDS,
            NEXT_IDS,
            SPARSE_CE,
            dict(expected_output_shape=(B, T, V)),
        )
        for cell in ("lstm", "rnn")
    },
    "Seq2SeqTransformer": (
        lambda dtype=None: Seq2SeqTransformer(V, 11, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
                                              max_source_length=8, max_target_length=8, dropout=0.0, dtype=dtype),
        {"encoder_token_ids": IDS * PADDING, "decoder_token_ids": NEXT_IDS % 11},
        np.array([[4, 5, 6, 7, 3, 0], [8, 9, 3, 0, 0, 0]], "int32"),  # padding after [END] (3): out of the loss
        MaskedCrossentropy(),
        dict(expected_output_shape=(B, T, 11)),
    ),
}

XFAIL = {}  # id -> reason, for a model that genuinely fails the battery

def _params(case_ids, xfail):
    return [
        pytest.param(
            case_id,
            id=case_id,
            marks=[pytest.mark.xfail(strict=True, reason=xfail[case_id])] if case_id in xfail else [],
        )
        for case_id in case_ids
    ]


@pytest.mark.parametrize("case_id", _params(CASES, XFAIL))
def test_model_battery(case_id):
    model_factory, inputs, targets, loss, kwargs = CASES[case_id]
    run_model_battery(model_factory, inputs, targets, loss, **kwargs)


@pytest.mark.parametrize("case_id", list(CASES))
def test_dtype_policy_survives_config_round_trip(case_id):
    """A model built mixed_bfloat16 comes back from its config (and from a .keras file) computing in bfloat16: the
    functional models keep the policy they were built with (keras_tx.models.common.construction_policy)."""
    assert_policy_round_trip(CASES[case_id][0](dtype="mixed_bfloat16"), "mixed_bfloat16")


def test_every_exported_model_has_a_battery_entry():
    exported = {
        name
        for name, value in vars(keras_tx.models).items()
        if inspect.isclass(value) and issubclass(value, keras.Model)
    }
    covered = {case_id.split("-")[0] for case_id in CASES}
    assert exported, "keras_tx.models exports no model"
    assert exported <= covered, f"models without a battery entry in CASES: {sorted(exported - covered)}"
    # Each entry builds the class it is named after.
    for case_id, (model_factory, *_) in CASES.items():
        assert type(model_factory()).__name__ == case_id.split("-")[0], case_id
