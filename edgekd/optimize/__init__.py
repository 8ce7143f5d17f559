"""Quantization-aware training and pruning for Keras 3 models, via tfmot.

tensorflow-model-optimization (tfmot) works with tf-keras (Keras 2) only
(tensorflow/model-optimization#1119). This package is the one place in
edgekd that imports tf-keras or tfmot: it builds a tf-keras *twin* of a
Keras 3 model (:func:`to_tf_keras`), runs tfmot on the twin, and hands back
either TFLite bytes (:func:`convert_qat`) or a Keras 3 model
(:func:`copy_weights_back`, :attr:`PruneResult.model`).

tfmot is an optional extra: ``pip install 'edgekd[tfmot]'``.
"""

from edgekd.optimize.bridge import (
    LAYER_BUILDERS,
    SUPPORTED_LAYERS,
    copy_weights_back,
    max_abs_diff,
    to_tf_keras,
    unsupported_layers,
)
from edgekd.optimize.pipeline import OptimizeReport, format_report, qat_then_convert
from edgekd.optimize.prune import LayerSparsity, PruneResult, format_sparsity, prune
from edgekd.optimize.qat import QATEpoch, QATResult, convert_qat, format_history, quantize_aware

__all__ = [
    "LAYER_BUILDERS", "SUPPORTED_LAYERS", "LayerSparsity", "OptimizeReport", "PruneResult", "QATEpoch",
    "QATResult", "convert_qat", "copy_weights_back", "format_history", "format_report", "format_sparsity",
    "max_abs_diff",
    "prune", "qat_then_convert", "quantize_aware", "to_tf_keras", "unsupported_layers",
]
