"""A fully connected student: ``Flatten → depth × Dense(units·α, ReLU) → Dense logits``.

Dense students have no built-in spatial prior, so on images they learn from hard labels alone less than a
convolutional student of the same flash. That is where distillation pays even with every label: the
teacher's soft targets carry the structure the labels do not (Hinton et al. 2015, MNIST; here
``docs/benchmarks.md``, ``distill_patient_dense``). On a microcontroller every layer is one int8
FULLY_CONNECTED with fused ReLU, the op CMSIS-NN and ESP-NN run fastest per multiply-add.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

from edgekd.errors import invalid_value
from edgekd.students.builders import _head, _model_input
from edgekd.students.blocks import make_divisible

DEPTH_RANGE = (1, 8)


def dense(
    input_shape: Sequence[int] = (8, 8, 1),
    num_classes: int = 10,
    *,
    width: float = 1.0,
    resolution: float = 1.0,
    depth: int = 1,
    units: int = 128,
    dropout: float = 0.0,
    upsample: bool = False,
    softmax: bool = False,
    name: str = "dense",
) -> Any:
    """A multilayer perceptron over the flattened input.

    Hidden layer ``i`` (from 1) is ``fc{i}``: make_divisible(units·α) units with a fused ReLU; the head is
    ``logits`` (preceded by ``dropout`` when it is non-zero, followed by ``probs`` with ``softmax=True``).
    ``dense((8, 8, 1), 10, width=4)`` is Flatten → Dense(512, ReLU) → Dense(10): 38,410 parameters.

    Args:
        input_shape: (H, W, C) of the data *before* the resolution multiplier.
        num_classes: Number of output logits.
        width: Width multiplier α on ``units``.
        resolution: Resolution multiplier ρ (model input (H·ρ, W·ρ, C)).
        depth: Number of hidden layers (1-8).
        units: Hidden units at α = 1.
        dropout: Dropout rate before the logits, in [0, 1).
        upsample: Allow ``resolution > 1``.
        softmax: Append a Softmax (default: logits).
        name: Model name.

    Returns:
        An uncompiled ``keras.Model``.

    Raises:
        InvalidArgumentError: A value out of range.
    """
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    if not isinstance(units, numbers.Integral) or isinstance(units, bool) or not 1 <= units <= 65536:
        raise invalid_value("units", "an int in [1, 65536], e.g. 128", units)
    if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise invalid_value("dropout", "a number in [0, 1), e.g. 0.2", dropout)
    if not isinstance(softmax, bool):
        raise invalid_value("softmax", "True or False", softmax)
    inputs = _model_input(input_shape, num_classes, width, resolution, upsample, depth, DEPTH_RANGE)
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i in range(1, depth + 1):
        x = keras.layers.Dense(make_divisible(int(units) * width), activation="relu", name=f"fc{i}")(x)
    return keras.Model(inputs, _head(x, num_classes, dropout=float(dropout), softmax=softmax, pool=False), name=name)
