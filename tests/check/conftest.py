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


def repack(data: bytes, edit) -> bytes:
    """``data`` unpacked with the schema's object API, changed by ``edit(model)``, packed again."""
    import flatbuffers
    from tflite_micro.python.tflite_micro import runtime

    m = runtime.schema_fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(m)
    b = flatbuffers.Builder(len(data) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.fixture(scope="session")
def split_tflite():
    """int8 bytes: Conv2D → SPLIT (2 ways) → Add → Flatten (SHAPE … RESHAPE) → Dense; op 1 is SPLIT, op 6 RESHAPE."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    a, b = keras.ops.split(x, 2, axis=-1)
    x = keras.layers.Flatten()(keras.layers.Add()([a, b]))
    rep = np.random.default_rng(0).random((20, 8, 8, 1), dtype=np.float32)
    return _int8(keras.Model(inp, keras.layers.Dense(10)(x)), rep)


def _op_index(data: bytes, name: str) -> int:
    from edgekd.flatbuffer import read_tflite

    return next(op.index for op in read_tflite(data).operators if op.op_name == name)


@pytest.fixture(scope="session")
def split_xnnpack_crash_tflite(split_tflite, tmp_path_factory):
    """SPLIT's num_splits (3) disagrees with its 2 outputs: LiteRT's XNNPACK delegate segfaults preparing it
    (its builtin kernel refuses it; TFLM runs it)."""
    k = _op_index(split_tflite, "SPLIT")

    def edit(m):
        m.subgraphs[0].operators[k].builtinOptions.numSplits = 3

    path = tmp_path_factory.mktemp("check") / "split_xnnpack_crash.tflite"
    path.write_bytes(repack(split_tflite, edit))
    return str(path)


@pytest.fixture(scope="session")
def reshape_no_shape_tflite(split_tflite, tmp_path_factory):
    """RESHAPE with its shape input omitted (-1): TFLM runs it, LiteRT's builtin kernel segfaults."""
    k = _op_index(split_tflite, "RESHAPE")

    def edit(m):
        op = m.subgraphs[0].operators[k]
        op.inputs = np.array([op.inputs[0], -1], dtype=np.int32)

    path = tmp_path_factory.mktemp("check") / "reshape_no_shape.tflite"
    path.write_bytes(repack(split_tflite, edit))
    return str(path)


@pytest.fixture(scope="session")
def endless_while_tflite(tmp_path_factory):
    """A valid float model whose WHILE loop never ends (its counter's increment is 0)."""
    import struct

    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def loop(v):
        def body(i, v):
            return i + 1, v * 0.5 + 1.0
        return tf.while_loop(lambda i, v: i < 10, body, [tf.constant(0), v])[1]

    data = tf.lite.TFLiteConverter.from_concrete_functions([loop.get_concrete_function()], loop).convert()

    def edit(m):
        body = m.subgraphs[m.subgraphs[0].operators[0].builtinOptions.bodySubgraphIndex]
        for op in body.operators:  # the int32 ADD of the counter: its constant operand becomes 0
            for i in op.inputs:
                t = body.tensors[i]
                if t.type == 2 and m.buffers[t.buffer].data is not None and len(m.buffers[t.buffer].data) == 4:
                    m.buffers[t.buffer].data = np.frombuffer(struct.pack("<i", 0), np.uint8).copy()

    path = tmp_path_factory.mktemp("check") / "endless_while.tflite"
    path.write_bytes(repack(data, edit))
    return str(path)
