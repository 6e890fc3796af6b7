"""Recurrence: SimpleRNN -> LSTM.

Steps 1 and 2 of the line RNN -> LSTM -> attention -> ... -> image GPT. A recurrent network reads a sequence
one step at a time and carries everything it has seen in a state vector:

    SimpleRNN:  h_t = tanh(x_t W + h_{t-1} U + b)

The gradient reaching step t from a loss at step T is a product of T - t Jacobians of that update; with tanh
and a contracting U it shrinks geometrically, so a SimpleRNN cannot learn long-range dependencies. The LSTM adds
a cell state c_t that is updated additively, through gates:

    i, f, g, o = sigmoid(.), sigmoid(.), tanh(.), sigmoid(.)   of   x_t W + h_{t-1} U + b   (split in four)
    c_t = f * c_{t-1} + i * g          h_t = o * tanh(c_t)

With the forget gate f near 1 the gradient flows along c almost unchanged (tests/layers/test_recurrent.py
measures the difference). Both layers keep Keras' weight layout (kernel, recurrent_kernel, bias; LSTM gates in
i, f, c, o order), so `set_weights` moves weights between these layers and `keras.layers.SimpleRNN`/`LSTM`.

The input projection x_t W does not depend on the state, so it is computed for all steps in one matrix
product before the loop; only h_{t-1} U runs serially. Everything else a Keras recurrent layer does (`stateful`,
`initial_state`, masks, dropout masks, the loop itself, `Bidirectional`) comes from `keras.layers.RNN`, which these
layers subclass: they change only what the loop runs.
"""


import keras
from keras import ops

# Keras' dropout bookkeeping for cells: one mask per sequence (or one per gate), drawn from the cell's seed
# generator and cached for every step, so that `keras.layers.RNN` prepares and resets our masks as it does its own.
from keras.src import backend as keras_backend  # its rnn(): the loop keras.layers.RNN runs, on every backend
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

from keras_tx.layers.common import register as _register


class _Cell(keras.layers.Layer, DropoutRNNCell):
    """Shared weights and configuration of the two cells. A cell maps (input_t, states) to (h_t, new states)."""

    gates = 1  # how many units-wide blocks the kernel produces
    num_states = 1

    def __init__(
        self,
        units,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"`units` must be a positive integer, got units={units!r}.")
        self.units = units
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = min(1.0, max(0.0, dropout))
        self.recurrent_dropout = min(1.0, max(0.0, recurrent_dropout))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # What keras.layers.RNN asks of a cell.
        self.state_size = units if self.num_states == 1 else [units] * self.num_states
        self.output_size = units

    def build(self, input_shape):
        width = self.gates * self.units
        self.kernel = self.add_weight(
            shape=(input_shape[-1], width),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
            name="kernel",
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
            name="recurrent_kernel",
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(width,),
                initializer=self._bias_initializer(),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                name="bias",
            )

    def _bias_initializer(self):
        return self.bias_initializer

    def project_inputs(self, inputs, training=False):
        """x W + b for one step (batch, features) or every step at once (batch, time, features)."""
        masks = self.get_dropout_mask(_first_step(inputs)) if training and 0 < self.dropout < 1 else None
        projected = _dropped_matmul(inputs, self.kernel, masks)
        return projected + self.bias if self.use_bias else projected

    def project_state(self, h, training=False):
        """h_{t-1} U, with Keras' recurrent dropout mask on h in training."""
        masks = self.get_recurrent_dropout_mask(h) if training and 0 < self.recurrent_dropout < 1 else None
        return _dropped_matmul(h, self.recurrent_kernel, masks)

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype) for _ in range(self.num_states)]

    def call(self, inputs, states, training=False):
        """One step on raw inputs (batch, features), as `keras.layers.RNN` calls a cell."""
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        return self.step(self.project_inputs(inputs, training), states, training)

    def get_config(self):
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update(
            units=self.units,
            use_bias=self.use_bias,
            kernel_initializer=serialize(self.kernel_initializer),
            recurrent_initializer=serialize(self.recurrent_initializer),
            bias_initializer=serialize(self.bias_initializer),
            kernel_regularizer=serialize(self.kernel_regularizer),
            recurrent_regularizer=serialize(self.recurrent_regularizer),
            bias_regularizer=serialize(self.bias_regularizer),
            kernel_constraint=serialize(self.kernel_constraint),
            recurrent_constraint=serialize(self.recurrent_constraint),
            bias_constraint=serialize(self.bias_constraint),
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            seed=self.seed,
        )
        return config


@_register
class SimpleRNNCell(_Cell):
    """The Elman cell: h_t = activation(x_t W + h_{t-1} U + b).

    Args:
        units: width of the state.
        activation: defaults to tanh.
        use_bias, initializers, regularizers, constraints, dropout, recurrent_dropout, seed: as in
            `keras.layers.SimpleRNNCell`.

    Example:
    >>> cell = SimpleRNNCell(4)
    >>> h, states = cell(keras.ops.ones((2, 3)), [keras.ops.zeros((2, 4))])
    >>> tuple(h.shape)
    (2, 4)
    """

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, **kwargs)
        self.activation = keras.activations.get(activation)

    def step(self, projected_input, states, training=False):
        h = self.activation(projected_input + self.project_state(states[0], training))
        return h, [h]

    def get_config(self):
        return {**super().get_config(), "activation": keras.activations.serialize(self.activation)}


@_register
class LSTMCell(_Cell):
    """The LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

    Gates are laid out in Keras' order i, f, c (candidate), o along the last axis of kernel, recurrent_kernel
    and bias.

    Args:
        units: width of the hidden and cell states.
        activation: of the candidate and of the cell output; defaults to tanh.
        recurrent_activation: of the gates; defaults to sigmoid.
        unit_forget_bias: initialize the forget gate's bias to 1 so that memory is kept early in training.
        implementation: as in Keras: 1 draws a separate dropout mask for each gate (forced by
            `recurrent_dropout`), 2 one mask for all four; the maths is the same.
        use_bias, initializers, regularizers, constraints, dropout, recurrent_dropout, seed: as in
            `keras.layers.LSTMCell`.

    Example:
    >>> cell = LSTMCell(4)
    >>> h, (h2, c) = cell(keras.ops.ones((2, 3)), [keras.ops.zeros((2, 4)), keras.ops.zeros((2, 4))])
    >>> tuple(c.shape)
    (2, 4)
    """

    gates = 4
    num_states = 2

    def __init__(
        self, units, activation="tanh", recurrent_activation="sigmoid", unit_forget_bias=True, implementation=2,
        **kwargs,
    ):
        super().__init__(units, **kwargs)
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.unit_forget_bias = unit_forget_bias
        self.implementation = 1 if self.recurrent_dropout else implementation
        if self.implementation == 1:
            self.dropout_mask_count = 4  # Keras' DropoutRNNCell then draws one mask per gate

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, base = self.units, self.bias_initializer

        def initializer(shape, dtype=None):
            # [i | f | c | o]: forget block ones, the rest from the configured initializer.
            rest = base((units,), dtype=dtype)
            return ops.concatenate([rest, ops.ones((units,), dtype=dtype), base((2 * units,), dtype=dtype)])

        return initializer

    def step(self, projected_input, states, training=False):
        h_prev, c_prev = states
        z = projected_input + self.project_state(h_prev, training)  # (B, 4 * units)
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = self.recurrent_activation(f) * c_prev + self.recurrent_activation(i) * self.activation(g)
        h = self.recurrent_activation(o) * self.activation(c)
        return h, [h, c]

    def get_config(self):
        config = super().get_config()
        config.update(
            activation=keras.activations.serialize(self.activation),
            recurrent_activation=keras.activations.serialize(self.recurrent_activation),
            unit_forget_bias=self.unit_forget_bias,
            implementation=self.implementation,
        )
        return config


class _Recurrent(keras.layers.RNN):
    """Runs a cell over the time axis: Keras' RNN layer (states, `stateful`, masks, dropout bookkeeping, the loop),
    fed the input projections of all steps at once. Masked (padded) steps leave the state unchanged and repeat the
    last output, as in Keras."""

    cell_class = None
    cell_name = None  # Keras' sublayer name, so that weight paths match too

    def __init__(
        self,
        units,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        activity_regularizer=None,
        **cell_kwargs,
    ):
        layer_kwargs = {k: cell_kwargs.pop(k) for k in ("name", "dtype", "trainable") if k in cell_kwargs}
        cell_kwargs.pop("use_cudnn", None)  # accepted for Keras' signature; this loop never calls cuDNN
        cell = self.cell_class(
            units,
            dtype=layer_kwargs.get("dtype"),
            trainable=layer_kwargs.get("trainable", True),
            name=self.cell_name,
            **cell_kwargs,
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            activity_regularizer=activity_regularizer,
            **layer_kwargs,
        )

    units = property(lambda self: self.cell.units)
    dropout = property(lambda self: self.cell.dropout)
    recurrent_dropout = property(lambda self: self.cell.recurrent_dropout)

    def build(self, sequences_shape, initial_state_shape=None):
        sequences_shape = tuple(sequences_shape)
        if len(sequences_shape) != 3:
            raise ValueError(f"{type(self).__name__} expects (batch, time, features) inputs, got {sequences_shape}.")
        super().build(sequences_shape, initial_state_shape)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        """Keras' loop over time (masks, `go_backwards`, `unroll`), run over the projected inputs."""
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        # x_t W + b does not depend on the state: one matrix product for all steps, then only the serial part.
        projected = self.cell.project_inputs(sequences, training)  # (B, T, gates * units)

        def step(projected_input, states):
            return self.cell.step(projected_input, list(states), training)

        return keras_backend.rnn(
            step,
            projected,
            list(initial_state),
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )  # (last output, outputs, final states)

    def get_config(self):
        config = super().get_config()
        del config["cell"]
        cell_config = self.cell.get_config()
        for key in ("name", "dtype", "trainable"):
            cell_config.pop(key, None)
        config.update(cell_config)
        config["activity_regularizer"] = keras.saving.serialize_keras_object(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@_register
class SimpleRNN(_Recurrent):
    """A fully-connected recurrent layer, a drop-in for `keras.layers.SimpleRNN` (same arguments, same weights).

    Args:
        units: width of the state and output.
        return_sequences: return the output of every step (batch, T, units), not only the last.
        return_state: also return the final state.
        go_backwards: read the sequence from the end; outputs come in reading order, as in Keras.
        stateful: carry the final states of one batch into the next (`reset_state()` zeroes them).
        unroll: run the loop as unrolled Python steps (short sequences only).
        zero_output_for_mask: masked steps output zeros instead of repeating the last output.
        dropout, recurrent_dropout: rates of the input and state dropout (one mask per sequence, as Keras draws).
        seed: seed of the dropout.
        **cell_kwargs: `activation`, `use_bias`, initializers, regularizers, constraints: as for `SimpleRNNCell`.

    Call arguments:
        inputs: (batch, T, features); mask: optional (batch, T), 1 = real step; initial_state: optional list.

    Example:
    >>> tuple(SimpleRNN(8, return_sequences=True)(keras.ops.ones((2, 5, 3))).shape)
    (2, 5, 8)
    """

    cell_class = SimpleRNNCell
    cell_name = "simple_rnn_cell"


@_register
class LSTM(_Recurrent):
    """Long short-term memory layer, a drop-in for `keras.layers.LSTM` (same arguments, same weights).

    Args:
        units: width of the hidden and cell states.
        return_sequences: return the output of every step (batch, T, units), not only the last.
        return_state: also return the final hidden and cell states `[output, h, c]`.
        go_backwards: read the sequence from the end; outputs come in reading order, as in Keras.
        stateful: carry the final states of one batch into the next (`reset_state()` zeroes them).
        unroll: run the loop as unrolled Python steps (short sequences only).
        zero_output_for_mask: masked steps output zeros instead of repeating the last output.
        dropout, recurrent_dropout: rates of the input and state dropout (masks drawn as Keras draws them).
        seed: seed of the dropout.
        **cell_kwargs: `activation`, `recurrent_activation`, `unit_forget_bias`, `use_bias`, `implementation`,
            initializers, regularizers, constraints: as for `LSTMCell`. `use_cudnn` is accepted and ignored.

    Call arguments:
        inputs: (batch, T, features); mask: optional (batch, T), 1 = real step; initial_state: optional [h, c].

    Example:
    >>> output, h, c = LSTM(8, return_state=True)(keras.ops.ones((2, 5, 3)))
    >>> tuple(output.shape), tuple(c.shape)
    ((2, 8), (2, 8))
    """

    cell_class = LSTMCell
    cell_name = "lstm_cell"


# --- Helpers -----------------------------------------------------------------------------------------------------


def _first_step(inputs):
    return inputs[:, 0] if len(inputs.shape) == 3 else inputs  # the (batch, features) shape a mask is drawn for


def _dropped_matmul(x, kernel, masks):
    """x W, with dropout masks on x as Keras' cells apply them: one mask, or one per gate (each gate's block of W
    then sees x under its own mask). `x` is (B, F) or (B, T, F); a mask is (B, F), shared by all steps."""
    if masks is None:
        return ops.matmul(x, kernel)
    masks = masks if isinstance(masks, (list, tuple)) else [masks]
    if len(x.shape) == 3:
        masks = [m[:, None, :] for m in masks]
    if len(masks) == 1:
        return ops.matmul(x * masks[0], kernel)
    blocks = ops.split(kernel, len(masks), axis=-1)
    return ops.concatenate([ops.matmul(x * m, w) for m, w in zip(masks, blocks)], axis=-1)
