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
product before the loop; only h_{t-1} U runs serially, in `keras.ops.scan`.
"""

import keras
from keras import ops

from keras_tx.layers.common import register as _register



class _Cell(keras.layers.Layer):
    """Shared weights and configuration of the two cells. A cell maps (input_t, states) to (h_t, new states)."""

    gates = 1  # how many units-wide blocks the kernel produces

    def __init__(
        self,
        units,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
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

    def build(self, input_shape):
        width = self.gates * self.units
        self.kernel = self.add_weight((input_shape[-1], width), self.kernel_initializer, name="kernel")
        self.recurrent_kernel = self.add_weight(
            (self.units, width), self.recurrent_initializer, name="recurrent_kernel"
        )
        self.bias = self.add_weight((width,), self._bias_initializer(), name="bias") if self.use_bias else None

    def _bias_initializer(self):
        return self.bias_initializer

    def project_inputs(self, inputs):
        """x W + b for every step at once: (..., features) -> (..., gates * units)."""
        projected = ops.matmul(inputs, self.kernel)
        return projected + self.bias if self.use_bias else projected

    def initial_state(self, batch_size, dtype):
        return [ops.zeros((batch_size, self.units), dtype=dtype) for _ in range(self.num_states)]

    def call(self, inputs, states):
        """One step on raw inputs (batch, features), as Keras cells are called."""
        return self.step(self.project_inputs(inputs), states)

    def get_config(self):
        config = super().get_config()
        serialize = keras.initializers.serialize
        config.update(
            units=self.units,
            use_bias=self.use_bias,
            kernel_initializer=serialize(self.kernel_initializer),
            recurrent_initializer=serialize(self.recurrent_initializer),
            bias_initializer=serialize(self.bias_initializer),
        )
        return config


@_register
class SimpleRNNCell(_Cell):
    """The Elman cell: h_t = activation(x_t W + h_{t-1} U + b).

    Args:
        units: width of the state.
        activation: defaults to tanh.
        use_bias, kernel_initializer, recurrent_initializer, bias_initializer: as in `keras.layers.SimpleRNNCell`.

    Example:
    >>> cell = SimpleRNNCell(4)
    >>> h, states = cell(keras.ops.ones((2, 3)), [keras.ops.zeros((2, 4))])
    >>> tuple(h.shape)
    (2, 4)
    """

    num_states = 1

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, **kwargs)
        self.activation = keras.activations.get(activation)

    def step(self, projected_input, states):
        h = self.activation(projected_input + ops.matmul(states[0], self.recurrent_kernel))
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
        use_bias, kernel_initializer, recurrent_initializer, bias_initializer: as in `keras.layers.LSTMCell`.

    Example:
    >>> cell = LSTMCell(4)
    >>> h, (h2, c) = cell(keras.ops.ones((2, 3)), [keras.ops.zeros((2, 4)), keras.ops.zeros((2, 4))])
    >>> tuple(c.shape)
    (2, 4)
    """

    gates = 4
    num_states = 2

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.unit_forget_bias = unit_forget_bias

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, base = self.units, self.bias_initializer

        def initializer(shape, dtype=None):
            # [i | f | c | o]: forget block ones, the rest from the configured initializer.
            rest = base((units,), dtype=dtype)
            return ops.concatenate([rest, ops.ones((units,), dtype=dtype), base((2 * units,), dtype=dtype)])

        return initializer

    def step(self, projected_input, states):
        h_prev, c_prev = states
        z = projected_input + ops.matmul(h_prev, self.recurrent_kernel)  # (B, 4 * units)
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
        )
        return config


class _Recurrent(keras.layers.Layer):
    """Runs a cell over the time axis. Masked (padded) steps leave the state unchanged and repeat the last output,
    as Keras' recurrent layers do."""

    cell_class = None
    cell_name = None  # Keras' sublayer name, so that weight paths match too

    def __init__(
        self,
        units,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        dropout=0.0,
        seed=None,
        **cell_kwargs,
    ):
        layer_kwargs = {k: cell_kwargs.pop(k) for k in ("name", "dtype", "trainable") if k in cell_kwargs}
        super().__init__(**layer_kwargs)
        self.cell = self.cell_class(units, dtype=self.dtype_policy, name=self.cell_name, **cell_kwargs)
        self.units = units
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.dropout = dropout
        self.seed = seed
        self.supports_masking = True
        # One dropout mask per sequence, shared by all steps (Gal & Ghahramani), as Keras does.
        self.input_dropout = keras.layers.Dropout(dropout, seed=seed, dtype=self.dtype_policy)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} expects (batch, time, features) inputs, got {input_shape}.")
        self.cell.build(input_shape)

    def call(self, inputs, mask=None, initial_state=None, training=None):
        if self.dropout > 0:
            batch, features = ops.shape(inputs)[0], ops.shape(inputs)[-1]
            self.input_dropout.noise_shape = (batch, 1, features)
            inputs = self.input_dropout(inputs, training=training)
        projected = ops.swapaxes(self.cell.project_inputs(inputs), 0, 1)  # (T, B, gates * units)
        if initial_state is None:
            states = self.cell.initial_state(ops.shape(inputs)[0], projected.dtype)
        else:
            states = [ops.cast(s, projected.dtype) for s in _as_list(initial_state)]
        keep = None
        if mask is not None:
            keep = ops.swapaxes(ops.cast(mask, "bool")[:, :, None], 0, 1)  # (T, B, 1)
        if self.go_backwards:
            projected = ops.flip(projected, axis=0)
            keep = None if keep is None else ops.flip(keep, axis=0)

        def step(carry, x):
            # carry: (*states, last output), flat; returns the new carry, whose last element is this step's output.
            states, last_output = list(carry[:-1]), carry[-1]
            if keep is None:
                output, new_states = self.cell.step(x, states)
            else:
                x, step_keep = x
                output, new_states = self.cell.step(x, states)
                new_states = [ops.where(step_keep, new, old) for new, old in zip(new_states, states)]
                output = ops.where(step_keep, output, last_output)
            return (*new_states, output)

        carry, outputs = _loop_over_time(
            step, (*states, ops.zeros_like(states[0])), projected if keep is None else (projected, keep)
        )
        final_states, last_output = list(carry[:-1]), carry[-1]  # outputs: (T, B, U)
        output = ops.swapaxes(outputs, 0, 1) if self.return_sequences else last_output  # (B, T, U) or (B, U)
        if self.return_state:
            return [output, *final_states]
        return output

    def compute_mask(self, inputs, mask=None):
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * self.cell.num_states
        return output_mask

    def compute_output_shape(self, input_shape):
        batch, time = input_shape[0], input_shape[1]
        output = (batch, time, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [output] + [(batch, self.units)] * self.cell.num_states
        return output

    def get_config(self):
        config = super().get_config()
        cell_config = self.cell.get_config()
        for key in ("name", "dtype", "trainable"):
            cell_config.pop(key, None)
        config.update(cell_config)
        config.update(
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            go_backwards=self.go_backwards,
            dropout=self.dropout,
            seed=self.seed,
        )
        return config


@_register
class SimpleRNN(_Recurrent):
    """A fully-connected recurrent layer, weight-compatible with `keras.layers.SimpleRNN`.

    Args:
        units: width of the state and output.
        return_sequences: return the output of every step (batch, T, units), not only the last.
        return_state: also return the final state.
        go_backwards: read the sequence from the end; outputs come in reading order, as in Keras.
        dropout: input dropout rate (one mask per sequence).
        seed: seed of the dropout.
        **cell_kwargs: `activation`, `use_bias`, initializers: as for `SimpleRNNCell`.

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
    """Long short-term memory layer, weight-compatible with `keras.layers.LSTM`.

    Args:
        units: width of the hidden and cell states.
        return_sequences: return the output of every step (batch, T, units), not only the last.
        return_state: also return the final hidden and cell states `[output, h, c]`.
        go_backwards: read the sequence from the end; outputs come in reading order, as in Keras.
        dropout: input dropout rate (one mask per sequence).
        seed: seed of the dropout.
        **cell_kwargs: `activation`, `recurrent_activation`, `unit_forget_bias`, `use_bias`, initializers:
            as for `LSTMCell`.

    Call arguments:
        inputs: (batch, T, features); mask: optional (batch, T), 1 = real step; initial_state: optional [h, c].

    Example:
    >>> output, h, c = LSTM(8, return_state=True)(keras.ops.ones((2, 5, 3)))
    >>> tuple(output.shape), tuple(c.shape)
    ((2, 8), (2, 8))
    """

    cell_class = LSTMCell
    cell_name = "lstm_cell"


def _loop_over_time(step, carry, xs):
    """Run `carry = step(carry, x_t)` over the leading (time) axis of `xs`; return (carry, stacked carry[-1]).

    One loop for every backend would be `ops.scan`, but TensorFlow's scan has no iteration bound, and XLA cannot
    differentiate an unbounded loop ("requires a fixed tensor list size"): on TensorFlow a `while_loop` with
    `maximum_iterations` runs instead, writing each step's output into a preallocated (T, ...) buffer. JAX's
    `while_loop` is not reverse-differentiable, so JAX (and the others) keep `scan`.
    """
    first = xs[0] if isinstance(xs, tuple) else xs
    length = first.shape[0]
    if keras.backend.backend() == "tensorflow" and length is not None:

        def body(t, carry, outputs):
            carry = step(carry, tuple(x[t] for x in xs) if isinstance(xs, tuple) else xs[t])
            # scatter_update, not slice_update: TF has no gradient for the XLA dynamic-update-slice op.
            return t + 1, carry, ops.scatter_update(outputs, ops.reshape(t, (1, 1)), carry[-1][None])

        outputs = ops.zeros((length,) + tuple(ops.shape(carry[-1])), dtype=carry[-1].dtype)  # (T, B, U)
        _, carry, outputs = ops.while_loop(
            lambda t, carry, outputs: t < length, body, (0, carry, outputs), maximum_iterations=length
        )
        return carry, outputs

    # The TF backend's scan wants per-step outputs shaped like the carry; on the others that costs nothing.
    carry, per_step = ops.scan(lambda c, x: (lambda new: (new, new))(step(c, x)), carry, xs, length=length)
    return carry, per_step[-1]


def _as_list(states):
    return list(states) if isinstance(states, (list, tuple)) else [states]

