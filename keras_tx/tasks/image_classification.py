"""Image classification: a ViT or a ResNet and its image preprocessing (any file -> the model's size and mode).

    keras-tx train vit --data-dir fashion_mnist --out runs/vit     # ImageClassification.configs["vit"]
    keras-tx classify runs/vit shirt.png boot.jpg
    keras-tx evaluate runs/vit

    keras-tx import hf://google/vit-base-patch16-224 --out models/vit --labels labels.txt   # from_keras_hub
    keras-tx train vit --init-from models/vit --data-dir fashion_mnist --out runs/vit_finetuned

The model directory holds model.keras and metadata.json, whose "image_shape" and "class_names" say what the model
reads and what it answers. A file is read as the training images were (`keras_tx.data.images.load_image_file`:
any format PIL reads that the limits allow, any mode and size, padded to the model's aspect and resized) into
[0, 1]; an imported model's metadata also has "input_scale" and "input_offset" (per channel: the model reads
pixels * scale + offset, keras-hub's image converter's rescaling of the same pixels).
"""

import dataclasses
import types

import numpy as np

from keras_tx import validation
from keras_tx.config import POSITIVE, StackConfig, TrainingConfig, default, flag
from keras_tx.tasks.base import Task, chain_epochs, data_source, epochs_schedule


@dataclasses.dataclass
class ImageTrainingConfig(TrainingConfig):
    """The flags of every image verb: epochs over a dataset of labelled images (default: the built-in digits)."""

    epochs: int = flag(10, None, POSITIVE)
    train_size: int = flag(None, "use only the first N training images", POSITIVE)
    no_augment: bool = flag(False, "no random shifts")
    flip: bool = flag(False, "also random horizontal flips")
    batch_size: int = default("batch_size", 128)
    steps: int = default("steps", None)
    eval_interval: int = default("eval_interval", None)
    warmup_steps: int = default("warmup_steps", 200)
    weight_decay: float = default("weight_decay", 0.05)
    beta2: float = default("beta2", 0.999)


@dataclasses.dataclass
class ViTConfig(StackConfig, ImageTrainingConfig):
    """`keras-tx train vit`: a Vision Transformer image classifier."""

    model: str = "vit"
    init_from: str = flag(None, "a ViT model directory (keras-tx import or train vit): fine-tune its weights, a new "
                                "head if the classes differ; images are resized to its input; the architecture "
                                "flags are then ignored")
    patch_size: int = flag(4, None, POSITIVE)
    num_layers: int = flag(6, None, POSITIVE)
    mlp_dim: int = flag(None, "default 2 * hidden-dim", POSITIVE)


@dataclasses.dataclass
class ResNetConfig(ImageTrainingConfig):
    """`keras-tx train resnet`: a small ResNet image classifier (the CNN baseline)."""

    model: str = "resnet"
    width: int = flag(32, "channels of the first stage (64 = ResNet-18)", POSITIVE)
    blocks_per_stage: list = flag([2, 2, 2], None, POSITIVE, nargs="+")


def model_inputs(images, metadata):
    """Images (N, h, w, c) with pixels in [0, 1] -> what the model reads: resized to its "image_shape" if they are
    not (bilinear), grey repeated into RGB for an RGB model, then `* input_scale + input_offset` (per channel) if
    the model has them (an imported keras-hub preset). TensorFlow ops: for NumPy arrays, tf.data and graphs alike."""
    import tensorflow as tf

    height, width, channels = (int(d) for d in metadata["image_shape"])
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape[1:3] != (height, width):
        images = tf.image.resize(images, (height, width))
    if images.shape[-1] == 1 and channels == 3:
        images = tf.tile(images, [1, 1, 1, 3])
    if "input_scale" in metadata:
        images = images * tf.constant(metadata["input_scale"], tf.float32) + tf.constant(metadata["input_offset"],
                                                                                           tf.float32)
    return images


class ImageClassification(Task):
    """An image classifier: image files in, class names with probabilities out."""

    kind = "image_classifier"
    description = "an image classifier"
    configs = {"vit": ViTConfig, "resnet": ResNetConfig}
    history_metrics = {"test_accuracy": "val_accuracy", "test_loss": "val_loss", "train_accuracy": "accuracy"}
    required_fields = ("image_shape", "class_names")
    signatures = ("classify",)

    @property
    def image_shape(self):
        return tuple(int(d) for d in self.metadata["image_shape"])

    @property
    def class_names(self):
        return [str(name) for name in self.metadata["class_names"]]

    def read_images(self, paths):
        """Files -> float32 (N, H, W, C) in [0, 1] at the model's size (`validation`'s limits on every file)."""
        from keras_tx.data.images import load_image_file

        height, width, channels = self.image_shape
        return np.stack([load_image_file(p, (height, width), channels) for p in paths])

    def probabilities(self, images):
        """float32 (N, H, W, C) images in [0, 1] at the model's size -> (N, classes) probabilities."""
        import keras

        logits = self.model.predict(model_inputs(images, self.metadata), verbose=0)
        return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))

    def classify_files(self, paths, top_k=3):
        """[(path, [(label, probability), ...])] for image files; a file that is not an image raises ValueError."""
        paths = validation.batch(paths, "images")
        top_k = validation.integer("top_k", top_k, 1)  # more than there are classes: all of them
        if not paths:
            return []
        names = self.class_names
        results = []
        for path, p in zip(paths, self.probabilities(self.read_images(paths))):
            best = np.argsort(-p)[:top_k]
            results.append((path, [(names[i], float(p[i])) for i in best]))
        return results

    classify = classify_files  # what `keras-tx classify` calls on every task that classifies

    def evaluate(self, dataset=None, text_file=None, data_dir=None, batches=200, batch_size=12):
        """Accuracy on the test split of its dataset (or of the one given)."""
        from keras_tx.data.images import image_dataset, load_image_data

        source = data_dir or dataset or self.metadata.get("dataset")
        if source is None:
            raise ValueError("The model has no dataset of its own (an imported preset): give --data-dir or --dataset.")
        data = load_image_data(source)
        inputs = image_dataset(data.x_test, None, 256).map(lambda x: model_inputs(x, self.metadata))
        logits = self.model.predict(inputs, verbose=0)
        accuracy = float(np.mean(np.argmax(logits, axis=-1) == data.y_test))
        return {"model_dir": self.model_dir, "dataset": source, "test_accuracy": round(accuracy, 4),
                "test_images": int(len(data.y_test))}

    def serving_endpoints(self):
        """serving_default (pixels -> logits) and classify (image files -> labels), decoding in the graph."""
        import tensorflow as tf

        from keras_tx import graph_checks as guard
        from keras_tx.data.graph_images import to_model_pixels

        model, metadata = self.model, self.metadata
        height, width, channels = (int(d) for d in metadata["image_shape"])
        class_names = tf.constant([str(name) for name in metadata["class_names"]])
        num_classes = len(metadata["class_names"])

        def serving_default(images):
            logits = tf.cast(model(model_inputs(images, metadata), training=False), tf.float32)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

        def classify(image_bytes):
            image_bytes = guard.checked(image_bytes, guard.batch_check(image_bytes))
            images = tf.map_fn(
                lambda data: to_model_pixels(data, height, width, channels), image_bytes,
                fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32),
            )
            logits = model(model_inputs(images, metadata), training=False)
            probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
            probabilities, class_ids = tf.math.top_k(probabilities, num_classes)  # every class, best first
            return {"labels": tf.gather(class_names, class_ids), "class_ids": class_ids, "probabilities": probabilities}

        endpoints = [
            ("serving_default", serving_default,
             [tf.TensorSpec([None, height, width, channels], tf.float32, name="images")]),
            ("classify", classify, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
        ]
        return model, [], endpoints

    # ------------------------------------------------------------------------------------------- keras-hub

    @classmethod
    def from_keras_hub(cls, handle, backbone, labels=None):
        """The task of a ViT preset (`keras-tx import`): our ViT with keras-hub's ViTImageClassifier weights (the
        preset's head, or a new one of len(labels) classes for a backbone-only preset), and the image converter's
        size, scale and offset; class names from `labels`, else the class index."""
        import keras_hub
        from keras_hub.src.utils.preset_utils import TASK_CONFIG_FILE, check_file_exists

        from keras_tx.models import ViT

        if check_file_exists(handle, TASK_CONFIG_FILE):
            theirs = keras_hub.models.ViTImageClassifier.from_preset(handle, dtype="float32")
        elif labels:
            print(f"{handle} has no classifier head: a new one of {len(labels)} classes starts from random weights; "
                  "train it with `keras-tx train vit --init-from`.")
            theirs = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=len(labels))
        else:
            raise ValueError(f"{handle} is a ViT backbone without a classifier head: give --labels (one class name "
                             "a line) for a new head of that many classes.")
        if getattr(theirs, "intermediate_dim", None) is not None:
            raise ValueError(f"{handle}'s classifier has a pre-logits layer, which keras-tx's ViT does not have.")
        num_classes = theirs.num_classes
        if labels and len(labels) != num_classes:
            raise ValueError(f"--labels has {len(labels)} names; {handle}'s classifier has {num_classes} classes.")
        model = ViT.from_keras_hub(theirs.backbone, num_classes=num_classes)
        if theirs.pooling != model.get_config()["pooling"]:
            raise ValueError(f"{handle}'s classifier pools by {theirs.pooling!r}; keras-tx's ViT of its backbone "
                             f"pools by {model.get_config()['pooling']!r}.")
        model.head.set_weights(theirs.output_dense.get_weights())
        converter = keras_hub.layers.ImageConverter.from_preset(handle)
        height, width, channels = backbone.image_shape
        per_channel = lambda value, default: np.broadcast_to(np.asarray(  # noqa: E731
            default if value is None else value, "float64"), (channels,))
        metadata = {
            "kind": cls.kind, "architecture": "vit", "config": model.get_config(),
            "image_shape": [int(height), int(width), int(channels)],
            "class_names": list(labels) if labels else [str(i) for i in range(num_classes)],
            # keras-hub rescales 0-255 pixels by (scale, offset); ours are in [0, 1]: the scale is 255 times larger.
            "input_scale": [float(v) for v in 255.0 * per_channel(converter.scale, 1 / 255.0)],
            "input_offset": [float(v) for v in per_channel(converter.offset, 0.0)],
        }
        return cls(model, metadata)

    def save(self, out_dir, command=None):
        """Write the model directory (model.keras, metadata.json) to `out_dir`."""
        from keras_tx import artifacts

        return artifacts.save_model(out_dir, self.model, self.metadata, command=command)

    # ------------------------------------------------------------------------------------------- training

    @classmethod
    def training_data(cls, config):
        from keras_tx.data.images import image_dataset, load_image_data

        source, kwargs = data_source(config, "digits")
        data = load_image_data(source, **kwargs)
        if config.train_size:
            data = data._replace(x_train=data.x_train[: config.train_size], y_train=data.y_train[: config.train_size])
        print(f"{source}: {len(data.x_train):,} training / {len(data.x_test):,} test images of shape "
              f"{data.x_train.shape[1:]}, {len(data.class_names)} classes.")
        start = getattr(config, "init_from", None) and cls.load(config.init_from)
        if start is not None and start.metadata.get("architecture") != config.model:
            raise ValueError(f"--init-from {config.init_from} holds a {start.metadata.get('architecture')} model, "
                             f"not a {config.model}.")
        # A model fine-tuned from another reads images as that one does (its size, channels and rescaling).
        inputs = {key: start.metadata[key] for key in ("image_shape", "input_scale", "input_offset")
                  if key in start.metadata} if start is not None else None
        test = image_dataset(data.x_test, data.y_test, 256)
        if inputs is not None:
            test = test.map(lambda x, y: (model_inputs(x, inputs), y))
        return types.SimpleNamespace(images=data, source=source, test=test, start=start, inputs=inputs)

    @classmethod
    def schedule(cls, config, data):
        return epochs_schedule(config, len(data.images.x_train), "images")

    @classmethod
    def build(cls, config, data):
        import keras

        from keras_tx.models import ResNet, ViT

        x = data.images.x_train
        height, width, channels = x.shape[1:4] if x.ndim == 4 else (*x.shape[1:3], 1)
        num_classes = len(data.images.class_names)
        if data.start is not None:  # its architecture and weights; a new head when the classes differ
            start = data.start.model
            model = type(start).from_config({**start.get_config(), "num_classes": num_classes,
                                             "dropout": config.dropout})
            model(np.zeros((1, *start.input_shape[1:]), "float32"))
            weights = {v.path: v for v in start.weights}
            for variable in model.weights:
                if variable.path in weights and tuple(weights[variable.path].shape) == tuple(variable.shape):
                    variable.assign(keras.ops.convert_to_numpy(weights[variable.path]))
            return model
        if config.model == "vit":
            model = ViT(image_size=(height, width), patch_size=config.patch_size, num_layers=config.num_layers,
                        num_heads=config.num_heads, hidden_dim=config.hidden_dim,
                        mlp_dim=config.mlp_dim or 2 * config.hidden_dim, num_classes=num_classes,
                        dropout=config.dropout, num_channels=channels)
        else:
            model = ResNet(input_shape=(height, width, channels), num_classes=num_classes, width=config.width,
                           blocks_per_stage=tuple(config.blocks_per_stage), dropout=config.dropout)
        model(np.zeros((1, *model.input_shape[1:]), "float32"))
        return model

    @classmethod
    def compile_arguments(cls, config):
        return {"metrics": ["accuracy"]}

    @classmethod
    def validation_data(cls, config, data, model, seed):
        return data.test

    @classmethod
    def batches(cls, config, data, model, seed):
        from keras_tx.data.images import image_dataset

        images = data.images
        _, steps_per_epoch = cls.schedule(config, data)
        def epoch(e):
            batches = image_dataset(images.x_train, images.y_train, config.batch_size, augment=not config.no_augment,
                                    shuffle=True, seed=seed + e, flip=config.flip)
            return batches if data.inputs is None else batches.map(lambda x, y: (model_inputs(x, data.inputs), y))

        return chain_epochs(epoch, steps_per_epoch, config.epochs)

    @classmethod
    def finish(cls, config, data, model, history, metrics):
        subset = f", first {config.train_size} training images" if config.train_size else ""
        fields = {
            "dataset": data.source,
            "split": "the dataset's own train/test split" + subset,
            "image_shape": list(model.input_shape[1:]), "class_names": list(data.images.class_names),
        }
        if data.start is not None:
            fields.update(init_from=config.init_from, **{key: data.start.metadata[key] for key in
                                                          ("input_scale", "input_offset", "preset")
                                                          if key in data.start.metadata})
        return fields, f"test accuracy {metrics['test_accuracy']:.4f} after {config.epochs} epochs"
