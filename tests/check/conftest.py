"""Models for the check tests, built once per session with the real TFLite converter."""

import numpy as np
import pytest


def _int8(model, rep_x):
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in rep_x[:100])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="session")
def digits_model(digits):
    """(keras model, int8 tflite bytes) of the shared small digits CNN."""
    from tests.conftest import _train_small_cnn

    m = _train_small_cnn(digits)
    return m, _int8(m, digits.val.x)


@pytest.fixture(scope="session")
def digits_tflite(digits_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("check") / "digits_int8.tflite"
    path.write_bytes(digits_model[1])
    return str(path)


@pytest.fixture(scope="session")
def big_tflite(tmp_path_factory):
    """A 1.2 MB int8 model (one 1200x1000 Dense): larger than the Nano 33's flash."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((1200,))
    m = keras.Model(inp, keras.layers.Dense(1000, name="huge")(inp))
    data = _int8(m, np.random.default_rng(0).random((20, 1200), dtype=np.float32))
    path = tmp_path_factory.mktemp("check") / "big_int8.tflite"
    path.write_bytes(data)
    return str(path)


@pytest.fixture(scope="session")
def topk_tflite(tmp_path_factory):
    """A float model using TOPK_V2, a TFLite builtin with no TFLM kernel."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32)])
    def f(x):
        return tf.math.top_k(x, k=3).values

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    path = tmp_path_factory.mktemp("check") / "topk.tflite"
    path.write_bytes(conv.convert())
    return str(path)


@pytest.fixture(scope="session")
def flex_tflite(tmp_path_factory):
    """A model with a SELECT_TF_OPS (Flex) op."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 3, 3], tf.float32)])
    def f(x):
        return tf.linalg.det(x)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.SELECT_TF_OPS]
    path = tmp_path_factory.mktemp("check") / "flex.tflite"
    path.write_bytes(conv.convert())
    return str(path)


@pytest.fixture(scope="session")
def huge_activation_tflite(tmp_path_factory):
    """Tiny weights, 32 MiB of activations (1x2048x2048x8 int8): over edgekd's 16 MiB probe limit."""
    import keras

    inp = keras.Input((2048, 2048, 1))
    m = keras.Model(inp, keras.layers.Conv2D(8, 1, name="wide")(inp))
    data = _int8(m, np.random.default_rng(0).random((2, 2048, 2048, 1), dtype=np.float32))
    path = tmp_path_factory.mktemp("check") / "huge_act.tflite"
    path.write_bytes(data)
    return str(path)


@pytest.fixture(scope="session")
def softmax_abort_tflite(tmp_path_factory):
    """Dense with all-zero weights → Softmax: a constant logit tensor whose degenerate quantization
    makes TFLM abort (SIGABRT) while preparing SOFTMAX — the crash seen with random-weight MobileNets."""
    import keras

    inp = keras.Input((16,))
    x = keras.layers.Dense(4, kernel_initializer="zeros", name="dead")(inp)
    m = keras.Model(inp, keras.layers.Softmax(name="softmax")(x))
    data = _int8(m, np.random.default_rng(0).random((20, 16), dtype=np.float32))
    path = tmp_path_factory.mktemp("check") / "softmax_abort.tflite"
    path.write_bytes(data)
    return str(path)
