"""Image classification: a ViT or a ResNet and its image preprocessing (any file -> the model's size and mode).

    keras-tx train vit --data-dir fashion_mnist --out runs/vit     # ImageClassification.configs["vit"]
    keras-tx classify runs/vit shirt.png boot.jpg
    keras-tx evaluate runs/vit

The model directory holds model.keras and metadata.json, whose "image_shape" and "class_names" say what the model
reads and what it answers. A file is read as the training images were (`keras_tx.data.images.load_image_file`:
any format PIL reads that the limits allow, any mode and size, padded to the model's aspect and resized).
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
    patch_size: int = flag(4, None, POSITIVE)
    num_layers: int = flag(6, None, POSITIVE)
    mlp_dim: int = flag(None, "default 2 * hidden-dim", POSITIVE)


@dataclasses.dataclass
class ResNetConfig(ImageTrainingConfig):
    """`keras-tx train resnet`: a small ResNet image classifier (the CNN baseline)."""

    model: str = "resnet"
    width: int = flag(32, "channels of the first stage (64 = ResNet-18)", POSITIVE)
    blocks_per_stage: list = flag([2, 2, 2], None, POSITIVE, nargs="+")


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
        import keras

        return keras.ops.convert_to_numpy(keras.ops.softmax(self.model.predict(images, verbose=0), axis=-1))

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

        source = data_dir or dataset or self.metadata["dataset"]
        data = load_image_data(source)
        logits = self.model.predict(image_dataset(data.x_test, None, 256), verbose=0)
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
            logits = tf.cast(model(images, training=False), tf.float32)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

        def classify(image_bytes):
            image_bytes = guard.checked(image_bytes, guard.batch_check(image_bytes))
            images = tf.map_fn(
                lambda data: to_model_pixels(data, height, width, channels), image_bytes,
                fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32),
            )
            probabilities = tf.nn.softmax(tf.cast(model(images, training=False), tf.float32), axis=-1)
            probabilities, class_ids = tf.math.top_k(probabilities, num_classes)  # every class, best first
            return {"labels": tf.gather(class_names, class_ids), "class_ids": class_ids, "probabilities": probabilities}

        endpoints = [
            ("serving_default", serving_default,
             [tf.TensorSpec([None, height, width, channels], tf.float32, name="images")]),
            ("classify", classify, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
        ]
        return model, [], endpoints

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
        return types.SimpleNamespace(images=data, source=source, test=image_dataset(data.x_test, data.y_test, 256))

    @classmethod
    def schedule(cls, config, data):
        return epochs_schedule(config, len(data.images.x_train), "images")

    @classmethod
    def build(cls, config, data):
        from keras_tx.models import ResNet, ViT

        x = data.images.x_train
        height, width, channels = x.shape[1:4] if x.ndim == 4 else (*x.shape[1:3], 1)
        num_classes = len(data.images.class_names)
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
        return chain_epochs(
            lambda e: image_dataset(images.x_train, images.y_train, config.batch_size, augment=not config.no_augment,
                                    shuffle=True, seed=seed + e, flip=config.flip),
            steps_per_epoch, config.epochs,
        )

    @classmethod
    def finish(cls, config, data, model, history, metrics):
        subset = f", first {config.train_size} training images" if config.train_size else ""
        fields = {
            "dataset": data.source,
            "split": "the dataset's own train/test split" + subset,
            "image_shape": list(model.input_shape[1:]), "class_names": list(data.images.class_names),
        }
        return fields, f"test accuracy {metrics['test_accuracy']:.4f} after {config.epochs} epochs"
