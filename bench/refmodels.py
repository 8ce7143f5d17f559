"""Public reference TinyML models, rebuilt in Keras (random weights) for latency work.

Architectures follow the MLPerf Tiny reference models (github.com/mlcommons/tiny,
benchmark/training/*): MobileNetV1 0.25 at 96×96 (visual wake words; the same
network with a 1-channel input is TFLM's person-detection example), DS-CNN
(keyword spotting, 49×10 MFCC input), ResNet-8 (CIFAR-10 image
classification) and the fully connected autoencoder (anomaly detection, 640
log-mel inputs). Latency on a board depends on shapes, not on weight values, so
random weights and random calibration data are enough.
"""

from __future__ import annotations

import numpy as np


def mobilenet_v1_025(input_channels: int = 3, classes: int = 2):
    """MobileNetV1 α=0.25 at 96×96 (MLPerf Tiny VWW; 1 channel = TFLM person detection)."""
    import keras
    from keras import layers

    inp = keras.Input((96, 96, input_channels), name="image")
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv1")(inp)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.ReLU(6.0, name="conv1_relu")(x)
    cfg = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2)] + [(128, 1)] * 5 + [(256, 2), (256, 1)]
    for i, (filters, stride) in enumerate(cfg, 1):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"dw{i}")(x)
        x = layers.BatchNormalization(name=f"dw{i}_bn")(x)
        x = layers.ReLU(6.0, name=f"dw{i}_relu")(x)
        x = layers.Conv2D(filters, 1, use_bias=False, name=f"pw{i}")(x)
        x = layers.BatchNormalization(name=f"pw{i}_bn")(x)
        x = layers.ReLU(6.0, name=f"pw{i}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(classes, name="logits")(x)
    out = layers.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="mobilenet_v1_025_96")


def ds_cnn(classes: int = 12):
    """DS-CNN (MLPerf Tiny KWS): 49×10 MFCC input, 64 channels, 4 depthwise-separable blocks."""
    import keras
    from keras import layers

    inp = keras.Input((49, 10, 1), name="mfcc")
    x = layers.Conv2D(64, (10, 4), strides=2, padding="same", name="conv1")(inp)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.ReLU(name="conv1_relu")(x)
    for i in range(1, 5):
        x = layers.DepthwiseConv2D(3, padding="same", name=f"dw{i}")(x)
        x = layers.BatchNormalization(name=f"dw{i}_bn")(x)
        x = layers.ReLU(name=f"dw{i}_relu")(x)
        x = layers.Conv2D(64, 1, name=f"pw{i}")(x)
        x = layers.BatchNormalization(name=f"pw{i}_bn")(x)
        x = layers.ReLU(name=f"pw{i}_relu")(x)
    x = layers.AveragePooling2D(pool_size=(25, 5), name="pool")(x)
    x = layers.Reshape((x.shape[-1],), name="flatten")(x)
    x = layers.Dense(classes, name="logits")(x)
    out = layers.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="ds_cnn_kws")


def resnet8(classes: int = 10):
    """ResNet-8 (MLPerf Tiny image classification, CIFAR-10 32×32×3)."""
    import keras
    from keras import layers

    inp = keras.Input((32, 32, 3), name="image")
    x = layers.Conv2D(16, 3, padding="same", name="conv1")(inp)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.ReLU(name="conv1_relu")(x)
    for s, (filters, stride) in enumerate([(16, 1), (32, 2), (64, 2)], 1):
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"s{s}_conv1")(x)
        y = layers.BatchNormalization(name=f"s{s}_bn1")(y)
        y = layers.ReLU(name=f"s{s}_relu1")(y)
        y = layers.Conv2D(filters, 3, padding="same", name=f"s{s}_conv2")(y)
        y = layers.BatchNormalization(name=f"s{s}_bn2")(y)
        if stride != 1:
            x = layers.Conv2D(filters, 1, strides=stride, name=f"s{s}_shortcut")(x)
        x = layers.Add(name=f"s{s}_add")([x, y])
        x = layers.ReLU(name=f"s{s}_relu2")(x)
    x = layers.AveragePooling2D(pool_size=8, name="pool")(x)
    x = layers.Reshape((x.shape[-1],), name="flatten")(x)
    x = layers.Dense(classes, name="logits")(x)
    out = layers.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="resnet8_ic")


def fc_autoencoder(input_dim: int = 640):
    """Dense autoencoder (MLPerf Tiny AD, v0.5 training/anomaly_detection/keras_model.py).

    640 inputs (5 frames × 128 log-mel bins) → Dense 128 ×4 → Dense 8 → Dense 128 ×4 → Dense 640, every
    hidden Dense followed by BatchNormalization and ReLU.
    """
    import keras
    from keras import layers

    inp = keras.Input((input_dim,), name="logmel")
    x = inp
    for i, units in enumerate((128, 128, 128, 128, 8, 128, 128, 128, 128), 1):
        x = layers.Dense(units, name=f"dense{i}")(x)
        x = layers.BatchNormalization(name=f"dense{i}_bn")(x)
        x = layers.ReLU(name=f"dense{i}_relu")(x)
    out = layers.Dense(input_dim, name="reconstruction")(x)
    return keras.Model(inp, out, name="fc_autoencoder_ad")


def to_int8(model, *, samples: int = 32, seed: int = 0) -> bytes:
    """Full-integer int8 TFLite (int8 I/O) calibrated on random data in [0, 1)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in model.input_shape[1:])

    def rep():
        for _ in range(samples):
            yield [rng.random((1,) + shape, dtype=np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def mobilenet_v2_030_80(classes: int = 1000):
    """MobileNetV2 α=0.30 at 80×80, 1000 classes (Keras definition: the last 1×1 conv keeps 1280 channels)."""
    import keras

    return keras.applications.MobileNetV2(input_shape=(80, 80, 3), alpha=0.3, weights=None, classes=classes)


MODELS = {
    "vww_mobilenet_v1_025": lambda: mobilenet_v1_025(3),
    "person_detect_mobilenet_v1_025": lambda: mobilenet_v1_025(1),
    "kws_ds_cnn": ds_cnn,
    "ic_resnet8": resnet8,
    "ad_fc_autoencoder": fc_autoencoder,
    "mobilenet_v2_030_80": mobilenet_v2_030_80,
}


def with_batchnorm_statistics(model, x):
    """``model`` with every BatchNormalization's moving mean and variance set from its inputs on ``x``.

    With random weights and the initial statistics (mean 0, variance 1), activations shrink or grow layer after
    layer; in the 96×96 MobileNet the logits end up within a few millionths, and TFLM cannot quantize a softmax
    on so small an input scale (its multiplier must exceed 1). Statistics from data keep every layer's output
    near unit variance, as in a trained network. Layers are visited in order, so each sees the normalised
    output of the ones before it.
    """
    import keras
    import numpy as np

    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        inputs = np.asarray(keras.Model(model.inputs, layer.input)(x, training=False))
        axes = tuple(range(inputs.ndim - 1))
        gamma, beta, _, _ = layer.get_weights()
        layer.set_weights([gamma, beta, inputs.mean(axis=axes), inputs.var(axis=axes) + 1e-3])
    return model
