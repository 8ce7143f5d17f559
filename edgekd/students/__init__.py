"""Student architectures and compression of teachers into students.

* :func:`depthwise_separable_block`, :func:`make_divisible`: building blocks.
* :func:`dense`, :func:`ds_cnn`, :func:`mobilenet_v1`, :func:`small_cnn`: builders with a
  width multiplier α, a resolution multiplier ρ and a depth knob; outputs
  are logits. The model input is the resized input (side × ρ): feed data at
  ``model.input_shape`` (edgekd's Distiller resizes to it).
* :func:`get` / :func:`parse_arch` / :func:`register`: the registry behind
  ``--student-arch ds_cnn:width=0.5,resolution=0.75`` and ``edgekd fit --arch``.
* :func:`shrink`: derive a student from a teacher's architecture.
"""

from __future__ import annotations

from edgekd.students.blocks import depthwise_separable_block, make_divisible
from edgekd.students.builders import ds_cnn, mobilenet_v1, scaled_shape, small_cnn
from edgekd.students.dense import dense
from edgekd.students.registry import BUILDERS, get, names, parse_arch, register, unregister
from edgekd.students.shrink import repeated_blocks, shrink

__all__ = [
    "BUILDERS", "dense", "depthwise_separable_block", "ds_cnn", "get", "make_divisible", "mobilenet_v1", "names",
    "parse_arch", "register", "repeated_blocks", "scaled_shape", "shrink", "small_cnn", "unregister",
]
