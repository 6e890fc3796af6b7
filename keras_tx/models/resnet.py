"""ResNet: the convolutional baseline a ViT is measured against.

Not a step of the Transformer line but its yardstick (He et al., 2015, "Deep Residual Learning"). A 3x3
convolution looks at a pixel's 3x3 neighbourhood with the same weights everywhere: locality and translation
equivariance are built in, where a ViT must learn them from data. That prior is why, at equal parameter count
and on small data sets such as Fashion-MNIST or CIFAR-10, this network beats keras_tx/models/vit.py.

This is the CIFAR-style ResNet-18 layout for 28x28 / 32x32 inputs: a 3x3 stem without the 7x7 stride-2
convolution and max-pool of the ImageNet version (which would shrink a 28x28 image to 7x7 before the first
block), then four stages of basic residual blocks (3x3 conv - BN - ReLU - 3x3 conv - BN, plus the shortcut),
each stage halving the resolution and doubling the width, then global average pooling and a linear head.
`width` sets the first stage's channels (64 in ResNet-18), so the parameter count can be matched to a ViT's.
"""

import keras

from keras_tx.models.common import ConstructorConfig

# The residual branch's last BatchNorm starts at zero ("zero-init residual", Goyal et al., 2017), so that every
# block starts as the identity and a deep stack trains like a shallow one at first.
_ZERO_GAMMA = "zeros"


@keras.saving.register_keras_serializable(package="keras_tx")
class ResNet(ConstructorConfig, keras.Model):
    """A small residual CNN for 28x28 / 32x32 images: 3x3 stem, stages of basic blocks, GAP, linear head.

    Args:
        input_shape: (height, width, channels) of the images, e.g. (28, 28, 1) or (32, 32, 3).
        num_classes: logits of the head; `None` returns the pooled features (batch, width * 2^(stages-1)).
        width: channels of the stem and the first stage; each later stage doubles them (64 = ResNet-18).
        blocks_per_stage: residual blocks per stage; (2, 2, 2, 2) is ResNet-18's layout.
        dropout: rate before the head.
        zero_init_residual: start each block's last BatchNorm scale at 0, so blocks begin as the identity.
        dtype: dtype policy of the layers, e.g. "mixed_bfloat16".

    Call arguments:
        images: (batch, height, width, channels) floats.

    Returns:
        (batch, num_classes) logits, or the pooled features when `num_classes` is None.

    Example:
    >>> import numpy as np
    >>> net = ResNet((28, 28, 1), num_classes=10, width=8, blocks_per_stage=(1, 1))
    >>> tuple(net(np.zeros((2, 28, 28, 1), "float32")).shape)
    (2, 10)
    """

    config_attributes = {"input_shape": "image_shape"}  # `input_shape` is a keras.Model property

    def __init__(
        self,
        input_shape=(32, 32, 3),
        num_classes=10,
        width=64,
        blocks_per_stage=(2, 2, 2, 2),
        dropout=0.0,
        zero_init_residual=True,
        dtype=None,
        **kwargs,
    ):
        input_shape = tuple(input_shape)
        blocks_per_stage = tuple(blocks_per_stage)
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}.")
        self._dtype_arg = dtype
        self._zero_init_residual = zero_init_residual

        images = keras.Input(input_shape, name="images")
        x = self._conv_bn(images, width, 3, 1, "stem")
        x = keras.layers.ReLU(dtype=dtype, name="stem_relu")(x)
        for stage, num_blocks in enumerate(blocks_per_stage):
            filters = width * 2**stage
            for block in range(num_blocks):
                strides = 2 if stage > 0 and block == 0 else 1  # downsample at the start of stages 2, 3, ...
                x = self._basic_block(x, filters, strides, f"stage{stage + 1}_block{block + 1}")
        x = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="pool")(x)  # (B, C)
        if num_classes is not None:
            x = keras.layers.Dropout(dropout, dtype=dtype, name="head_dropout")(x)
            x = keras.layers.Dense(num_classes, dtype=dtype, name="head")(x)
        super().__init__(inputs=images, outputs=x, dtype=dtype, **kwargs)
        self.keep_arguments(locals())  # === Config: input_shape (as image_shape), num_classes, ... ===

    def _conv_bn(self, x, filters, kernel_size, strides, name, gamma="ones"):
        # No conv bias: the BatchNorm right after it has its own shift.
        x = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            dtype=self._dtype_arg,
            name=f"{name}_conv",
        )(x)
        return keras.layers.BatchNormalization(gamma_initializer=gamma, dtype=self._dtype_arg, name=f"{name}_bn")(x)

    def _basic_block(self, x, filters, strides, name):
        """relu(F(x) + shortcut(x)), F = conv3x3 - BN - ReLU - conv3x3 - BN."""
        shortcut = x
        if strides != 1 or x.shape[-1] != filters:
            # The shapes differ: a strided 1x1 projection makes the shortcut match (ResNet's option B).
            shortcut = self._conv_bn(x, filters, 1, strides, f"{name}_shortcut")
        y = self._conv_bn(x, filters, 3, strides, f"{name}_1")
        y = keras.layers.ReLU(dtype=self._dtype_arg, name=f"{name}_1_relu")(y)
        y = self._conv_bn(y, filters, 3, 1, f"{name}_2", gamma=_ZERO_GAMMA if self._zero_init_residual else "ones")
        y = keras.layers.Add(dtype=self._dtype_arg, name=f"{name}_add")([shortcut, y])
        return keras.layers.ReLU(dtype=self._dtype_arg, name=f"{name}_out")(y)
