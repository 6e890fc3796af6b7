"""What the model files share."""

import keras


class ConstructorConfig:
    """For models built in `__init__` (functional graphs): `get_config` returns the constructor's arguments,
    and `from_config` calls the constructor with them again, rebuilding the graph.

    Mix in before `keras.Model`: `class GPT(ConstructorConfig, keras.Model)`.
    """

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)


def construction_policy(dtype):
    """The dtype policy a functional model's layers were built with: `dtype`, else the global policy now.

    Keras' functional `__init__` does not keep the `dtype` argument, so the model's own `dtype_policy` is the global
    one; `get_config` saves this instead (`keras.dtype_policies.serialize(...)`), or a mixed-precision model would
    reload as float32."""
    return keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
