"""Child process of test_distributed: must configure logical devices before TensorFlow initializes."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from edgekd.distill import Distiller  # noqa: E402
from tests.distill._models import mlp  # noqa: E402


def run(strategy, init, x, y, sw):
    with strategy.scope():
        teacher, student = mlp(32, name="teacher", seed=7), mlp(8, name="student")
        teacher.set_weights(init[0])
        student.set_weights(init[1])
        d = Distiller(student, teacher, temperature=3.0, alpha=0.3)
        d.compile(optimizer=keras.optimizers.SGD(0.5))
    before = d.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    hist = d.fit(x, y, sample_weight=sw, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return {"replicas": strategy.num_replicas_in_sync, "eval_loss": before["loss"],
            "eval_soft": before["soft_loss"], "fit_loss": hist.history["loss"][0],
            "weights": [w.tolist() for w in student.get_weights()]}


def main():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, size=64)
    sw = np.ones(64, np.float32)
    keras.utils.set_random_seed(0)
    init = [mlp(32, name="teacher", seed=7).get_weights(), mlp(8, name="student").get_weights()]
    one = run(tf.distribute.OneDeviceStrategy("/cpu:0"), init, x, y, sw)
    two = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), init, x, y, sw)
    json.dump({"one": one, "two": two}, sys.stdout)


if __name__ == "__main__":
    main()
