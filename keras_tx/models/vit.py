"""ViT: the Transformer encoder on image patches as tokens.

Step 8 of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention -> Transformer -> GPT/BERT
-> ViT -> image GPT. "An Image is Worth 16x16 Words" (Dosovitskiy et al., 2020) cuts an image into patches,
embeds each patch linearly, prepends a learned class token, adds learned positions and runs BERT's encoder
(pre-LN, GELU) over the sequence; the class token's final state, after one more LayerNorm, is the image's
representation.

What it adds over a CNN: every patch attends to every other patch from the first layer on, so the receptive
field is the whole image at once (a 3x3 convolution sees 3x3 pixels and grows its view layer by layer; both
are shown in tests/models/test_vit.py). What it lacks: the CNN's built-in locality and translation equivariance.
It has to learn them from data, so on small data sets (Fashion-MNIST, CIFAR-10 from scratch) it trails a ResNet
of the same size (keras_tx/models/resnet.py); its advantage appears with large data.

`attention_maps` and `attention_rollout` (Abnar & Zuidema, 2020) show where the class token looks.
`ViT.from_keras_hub` copies a `keras_hub.models.ViTBackbone`'s weights; both then compute the same features.
"""

import keras
import numpy as np
from keras import ops

from keras_tx.layers import ClassToken, PatchEmbedding, PositionEmbedding, TransformerEncoderBlock
from keras_tx.models.common import ConstructorConfig


def _pair(value):
    """An int or a (height, width) pair as a tuple of two ints."""
    return (int(value), int(value)) if np.ndim(value) == 0 else tuple(int(v) for v in value)


@keras.saving.register_keras_serializable(package="keras_tx")
class ViT(ConstructorConfig, keras.Model):
    """Vision Transformer: patch embedding, class token, learned positions, pre-LN encoder, classification head.

    A functional `keras.Model` built in `__init__` (so `summary()` shows every layer), rebuilt from its constructor
    arguments on reload.

    Args:
        image_size: side of the (square) input images, or (height, width); multiples of `patch_size`.
        patch_size: side of a square patch; `(image_size / patch_size)^2` patches become the tokens.
        num_layers: Transformer encoder blocks.
        num_heads: attention heads per block.
        hidden_dim: width of a token.
        mlp_dim: width of the feed-forward hidden layer (GELU).
        num_classes: logits of the head; `None` returns the pooled, normalized features (batch, hidden_dim).
        dropout: rate on the embeddings, the attention weights and each sublayer's output.
        pooling: "token" reads the class token's final state (the paper); "gap" averages the patch tokens
            and has no class token (the paper's global-average-pooling variant).
        num_channels: channels of the input images (1 for MNIST-like data, 3 for RGB).
        layer_norm_epsilon: of every LayerNorm (1e-6 as in the paper and keras-hub).
        dtype: dtype policy of the layers, e.g. "mixed_bfloat16".

    Call arguments:
        images: (batch, height, width, num_channels) floats (keras_tx.data.images scales them to [0, 1]).

    Returns:
        (batch, num_classes) logits, or (batch, hidden_dim) features when `num_classes` is None.

    Example:
    >>> vit = ViT(28, 7, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10, num_channels=1)
    >>> tuple(vit(np.zeros((2, 28, 28, 1), "float32")).shape)
    (2, 10)
    """

    def __init__(
        self,
        image_size,
        patch_size,
        num_layers,
        num_heads,
        hidden_dim,
        mlp_dim,
        num_classes,
        dropout=0.0,
        pooling="token",
        num_channels=3,
        layer_norm_epsilon=1e-6,
        dtype=None,
        **kwargs,
    ):
        if pooling not in ("token", "gap"):
            raise ValueError(f'pooling must be "token" or "gap", got pooling={pooling!r}.')
        height, width = _pair(image_size)
        if height % patch_size or width % patch_size:
            raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}.")
        self.grid_size = (height // patch_size, width // patch_size)
        num_tokens = self.grid_size[0] * self.grid_size[1] + (pooling == "token")

        # === Layers ===
        self.patch_embedding = PatchEmbedding(patch_size, hidden_dim, dtype=dtype, name="patch_embedding")
        self.class_token = ClassToken(dtype=dtype, name="class_token") if pooling == "token" else None
        self.position_embedding = PositionEmbedding(
            num_tokens,
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            dtype=dtype,
            name="position_embedding",
        )
        self.embedding_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embedding_dropout")
        self.encoder_blocks = [
            TransformerEncoderBlock(
                num_heads,
                mlp_dim,
                dropout=dropout,
                activation="gelu",
                layer_norm_epsilon=layer_norm_epsilon,
                norm_first=True,
                dtype=dtype,
                name=f"encoder_block_{i}",
            )
            for i in range(num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="final_norm")
        self.head = None if num_classes is None else keras.layers.Dense(num_classes, dtype=dtype, name="head")

        # === Functional model ===
        images = keras.Input((height, width, num_channels), name="images")
        outputs = self._pool(self._encode(images))
        if self.head is not None:
            outputs = self.head(outputs)
        super().__init__(inputs=images, outputs=outputs, dtype=dtype, **kwargs)
        self.keep_arguments(locals())  # === Config: image_size, patch_size, ... as attributes ===

    def _encode(self, images, training=None, return_attention_scores=False):
        """Images -> normalized token states (B, T, D), and each block's attention weights if asked."""
        x = self.patch_embedding(images)  # (B, P, D), patches in raster order
        if self.class_token is not None:
            x = self.class_token(x)  # (B, T = 1 + P, D)
        x = self.embedding_dropout(x + self.position_embedding(x), training=training)
        maps = []
        for block in self.encoder_blocks:
            if return_attention_scores:
                x, scores = block(x, return_attention_scores=True, training=training)  # scores (B, N, T, T)
                maps.append(scores)
            else:
                x = block(x, training=training)
        x = self.final_norm(x)
        return (x, maps) if return_attention_scores else x

    def _pool(self, tokens):
        """(B, T, D) -> (B, D): the class token, or the mean of the patch tokens."""
        return tokens[:, 0] if self.class_token is not None else ops.mean(tokens, axis=1)

    def encode(self, images, training=False):
        """The normalized states of all tokens, (batch, T, hidden_dim); T = 1 + patches with a class token.

        Example:
        >>> vit = ViT(16, 4, 1, 2, 16, 32, num_classes=None)
        >>> tuple(vit.encode(np.zeros((1, 16, 16, 3), "float32")).shape)
        (1, 17, 16)
        """
        return self._encode(ops.convert_to_tensor(images, self.compute_dtype), training=training)

    def attention_maps(self, images):
        """Each block's attention weights, a list (one per block) of numpy (batch, num_heads, T, T).

        Row t of a map is the distribution of token t's attention over all tokens; token 0 is the class
        token (with pooling="token"), then the patches in raster order.

        Example:
        >>> vit = ViT(16, 4, 2, 2, 16, 32, num_classes=3)
        >>> [m.shape for m in vit.attention_maps(np.zeros((1, 16, 16, 3), "float32"))]
        [(1, 2, 17, 17), (1, 2, 17, 17)]
        """
        _, maps = self._encode(ops.convert_to_tensor(images, self.compute_dtype), return_attention_scores=True)
        return [ops.convert_to_numpy(ops.cast(m, "float32")) for m in maps]

    def attention_rollout(self, images):
        """Attention rollout (Abnar & Zuidema, 2020): how much each patch flows into the pooled output.

        Each block's weights are averaged over heads, the identity is added for the residual connection and the
        rows are renormalized: A = (mean_heads(W) + I) / 2. Multiplying these through the blocks
        (A_L ... A_1) traces attention back to the input patches. The class token's row (or, with
        pooling="gap", the mean of the patch rows) is returned over the patches, as an image-shaped map.

        Returns:
            numpy (batch, height / patch_size, width / patch_size); larger = more attended.

        Example:
        >>> vit = ViT(16, 4, 2, 2, 16, 32, num_classes=3)
        >>> vit.attention_rollout(np.zeros((1, 16, 16, 3), "float32")).shape
        (1, 4, 4)
        """
        maps = self.attention_maps(images)
        tokens = maps[0].shape[-1]
        rollout = np.eye(tokens, dtype="float64")[None]  # (1, T, T)
        for weights in maps:
            joint = 0.5 * weights.astype("float64").mean(axis=1) + 0.5 * np.eye(tokens)  # (B, T, T), rows sum to 1
            rollout = joint @ rollout  # later blocks on the left: A_l ... A_1
        if self.class_token is not None:
            flow = rollout[:, 0, 1:]  # (B, P): from the class token to each patch
        else:
            flow = rollout.mean(axis=1)  # (B, P): the average of all tokens, which is what "gap" pools
        return flow.reshape((-1,) + self.grid_size).astype("float32")  # (B, H/p, W/p)

    @classmethod
    def from_keras_hub(cls, backbone, num_classes=None, dropout=None):
        """A ViT with the weights of a `keras_hub.models.ViTBackbone` (channels-last, square patches, biases).

        `ViT.encode` then equals `backbone(images)`, and the pooled features equal its class token's state.

        Args:
            backbone: a built `keras_hub.models.ViTBackbone`.
            num_classes: head of the new model (freshly initialized); None for features only.
            dropout: defaults to the backbone's `dropout_rate`.

        Example:
        >>> import keras_hub
        >>> hub = keras_hub.models.ViTBackbone((16, 16, 3), 4, 1, 2, 16, 32)
        >>> ViT.from_keras_hub(hub).count_params() == hub.count_params()
        True
        """
        patch = _pair(backbone.patch_size)
        unsupported = {
            "square patches": patch[0] == patch[1],
            "use_mha_bias=True": backbone.use_mha_bias,
            "use_mlp_bias=True": backbone.use_mlp_bias,
            "use_patch_bias=True": backbone.use_patch_bias,
            'data_format="channels_last"': backbone.data_format == "channels_last",
        }
        missing = [name for name, ok in unsupported.items() if not ok]
        if missing:
            raise ValueError(f"ViT.from_keras_hub supports backbones with {', '.join(missing)}; got {backbone.name}.")
        height, width, channels = backbone.image_shape
        model = cls(
            image_size=(height, width),
            patch_size=patch[0],
            num_layers=backbone.num_layers,
            num_heads=backbone.num_heads,
            hidden_dim=backbone.hidden_dim,
            mlp_dim=backbone.mlp_dim,
            num_classes=num_classes,
            dropout=backbone.dropout_rate if dropout is None else dropout,
            pooling="token" if backbone.use_class_token else "gap",
            num_channels=channels,
            layer_norm_epsilon=backbone.layer_norm_epsilon,
        )
        embedding = backbone.get_layer("vit_patching_and_embedding")
        encoder = backbone.get_layer("vit_encoder")
        model.patch_embedding.projection.set_weights(embedding.patch_embedding.get_weights())
        if model.class_token is not None:
            # Copies, not the same buffers: under JAX a jitted fit donates its variables, which would free the other
            # model's weights.
            model.class_token.token.assign(ops.convert_to_numpy(embedding.class_token))
        model.position_embedding.embeddings.assign(ops.convert_to_numpy(embedding.position_embedding.embeddings))
        # keras-hub's block is LN -> MHA -> residual, LN -> MLP(dense_1, dense_2) -> residual, as ours with
        # norm_first=True; the layers correspond one to one.
        for ours, theirs in zip(model.encoder_blocks, encoder.encoder_layers):
            ours.self_attention_norm.set_weights(theirs.layer_norm_1.get_weights())
            ours.self_attention.set_weights(theirs.mha.get_weights())
            ours.feedforward_norm.set_weights(theirs.layer_norm_2.get_weights())
            ours.feedforward.intermediate_dense.set_weights(theirs.mlp.dense_1.get_weights())
            ours.feedforward.output_dense.set_weights(theirs.mlp.dense_2.get_weights())
        model.final_norm.set_weights(encoder.layer_norm.get_weights())
        return model
