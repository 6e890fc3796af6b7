"""What the model files share."""

import inspect
import sys

import keras


class ConstructorConfig:
    """For models built in `__init__` (functional graphs): the constructor's arguments are the config.

    `self.keep_arguments(locals())`, after `super().__init__`, stores each argument of the calling `__init__` as an
    attribute of the same name, and the dtype policy the model was built with. `get_config` returns the arguments
    of the class's constructor (with name, trainable and that policy: written once here, for every model), and
    `from_config` calls the constructor with them again, rebuilding the graph.

    Mix in before `keras.Model`: `class GPT(ConstructorConfig, keras.Model)`. An argument kept under another
    attribute name (a `keras.Model` property such as `input_shape`) is mapped in `config_attributes`.
    """

    config_attributes = {}  # constructor argument -> the attribute holding it, where they differ

    def keep_arguments(self, arguments):
        code = sys._getframe(1).f_code  # the calling __init__: its parameters, not a subclass's
        for name in code.co_varnames[1 : code.co_argcount]:  # after `self`
            if name != "dtype":
                setattr(self, self.config_attributes.get(name, name), arguments[name])
        self._construction_policy = construction_policy(arguments.get("dtype"))

    def get_config(self):
        names = [name for name, parameter in inspect.signature(type(self).__init__).parameters.items()
                 if name not in ("self", "dtype") and parameter.kind is parameter.POSITIONAL_OR_KEYWORD]
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self._construction_policy),
            **{name: getattr(self, self.config_attributes.get(name, name)) for name in names},
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)


def copy_keras_hub_weights(pairs, blocks, their_blocks):
    """Give each of our layers in `pairs` [(ours, theirs)] the weights of its keras-hub twin, then each of our
    Transformer `blocks` those of the matching keras-hub block (`set_weights_from_keras_hub`)."""
    for ours, theirs in pairs:
        ours.set_weights(theirs.get_weights())
    for ours, theirs in zip(blocks, their_blocks, strict=True):
        ours.set_weights_from_keras_hub(theirs)


def construction_policy(dtype):
    """The dtype policy a functional model's layers were built with: `dtype`, else the global policy now.

    Keras' functional `__init__` does not keep the `dtype` argument, so the model's own `dtype_policy` is the global
    one; `get_config` saves this instead (`keras.dtype_policies.serialize(...)`), or a mixed-precision model would
    reload as float32."""
    return keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
