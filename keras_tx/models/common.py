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
