"""The loss against an independent NumPy computation; ensembles; softmax-teacher detection."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.errors import InvalidArgumentError


def _np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_terms(y, s, t, T, alpha):
    """Hinton et al.: alpha·CE(y, softmax(s)) + (1−alpha)·T²·KL(softmax(t/T) ‖ softmax(s/T)), per example."""
    log_ps, log_pt = _np_log_softmax(s / T), _np_log_softmax(t / T)
    soft = T * T * (np.exp(log_pt) * (log_pt - log_ps)).sum(-1)
    if y is None:
        return soft, np.zeros_like(soft), soft
    hard = -_np_log_softmax(s)[np.arange(len(y)), y]
    return alpha * hard + (1 - alpha) * soft, hard, soft


@pytest.fixture
def logits():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(6, 5)).astype(np.float32)
    t = (3 * rng.normal(size=(6, 5))).astype(np.float32)
    y = np.array([0, 1, 2, 3, 4, 1])
    return y, s, t


@pytest.mark.parametrize("T", [1.0, 4.0, 10.0])
def test_terms_match_numpy_with_labels(logits, T):
    from edgekd.distill import distillation_terms

    y, s, t = logits
    total, hard, soft = distillation_terms(y, s, t, temperature=T, alpha=0.3)
    e_total, e_hard, e_soft = _np_terms(y, s, t, T, 0.3)
    np.testing.assert_allclose(float(total), e_total.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(hard), e_hard.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(soft), e_soft.mean(), rtol=1e-5)


def test_t_squared_scaling(logits):
    """Doubling T multiplies the T² prefactor by 4: soft/T² must equal the bare tempered KL."""
    from edgekd.distill import distillation_terms

    y, s, t = logits
    for T in (2.0, 8.0):
        _, _, soft = distillation_terms(None, s, t, temperature=T, alpha=0.1)
        log_ps, log_pt = _np_log_softmax(s / T), _np_log_softmax(t / T)
        bare_kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(-1).mean()
        np.testing.assert_allclose(float(soft) / T ** 2, bare_kl, rtol=1e-5)


def test_terms_without_labels_and_per_example(logits):
    from edgekd.distill import distillation_terms

    _, s, t = logits
    total, hard, soft = distillation_terms(None, s, t, temperature=4.0, alpha=0.5, reduction="none")
    e_total, _, e_soft = _np_terms(None, s, t, 4.0, 0.5)
    np.testing.assert_allclose(total.numpy(), e_total, rtol=1e-5)  # soft alone, full weight
    np.testing.assert_allclose(soft.numpy(), e_soft, rtol=1e-5)
    assert np.all(hard.numpy() == 0)


def test_label_minus_one_is_unlabeled_and_one_hot_equals_sparse(logits):
    from edgekd.distill import distillation_terms

    y, s, t = logits
    y_mixed = y.copy()
    y_mixed[[1, 4]] = -1
    total, hard, _ = distillation_terms(y_mixed, s, t, temperature=2.0, alpha=0.4, reduction="none")
    e_total, e_hard, e_soft = _np_terms(y, s, t, 2.0, 0.4)
    expect = np.where(y_mixed >= 0, e_total, e_soft)
    np.testing.assert_allclose(total.numpy(), expect, rtol=1e-5)
    assert hard.numpy()[1] == 0 and hard.numpy()[4] == 0
    one_hot = np.eye(5, dtype=np.float32)[y]
    a = distillation_terms(one_hot, s, t, temperature=2.0, alpha=0.4)
    b = distillation_terms(y, s, t, temperature=2.0, alpha=0.4)
    np.testing.assert_allclose([float(v) for v in a], [float(v) for v in b], rtol=1e-5)


def test_keras_logits_distillation_with_kl_instance_agrees(logits):
    """keras.distillation.LogitsDistillation (KLDivergence instance) computes the same soft term."""
    import keras
    from keras.distillation import LogitsDistillation

    from edgekd.distill import distillation_terms

    _, s, t = logits
    theirs = LogitsDistillation(temperature=4.0, loss=keras.losses.KLDivergence()).compute_loss(t, s)
    _, _, ours = distillation_terms(None, s, t, temperature=4.0, alpha=0.1)
    np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-4)


def test_gradient_inside_tf_keras_tape(logits):
    """The function is pure TF: usable in a tf-keras (Keras 2) training loop."""
    import tensorflow as tf
    import tf_keras

    from edgekd.distill import distillation_terms

    y, s, t = logits
    model = tf_keras.Sequential([tf_keras.layers.Dense(5, input_shape=(5,))])
    with tf.GradientTape() as tape:
        total, _, _ = distillation_terms(y, model(s), t, temperature=4.0, alpha=0.1)
    grads = tape.gradient(total, model.trainable_variables)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


def test_invalid_arguments(logits):
    from edgekd.distill import distillation_terms

    y, s, t = logits
    with pytest.raises(InvalidArgumentError, match="temperature"):
        distillation_terms(y, s, t, temperature=0, alpha=0.1)
    with pytest.raises(InvalidArgumentError, match="alpha"):
        distillation_terms(y, s, t, temperature=2, alpha=1.5)


def test_ensemble_probs_and_logits(logits):
    from edgekd.distill import ensemble_logits

    _, s, t = logits
    T = 3.0
    combined = ensemble_logits([s, t], temperature=T, mode="probs").numpy()
    expect = (np.exp(_np_log_softmax(s / T)) + np.exp(_np_log_softmax(t / T))) / 2
    np.testing.assert_allclose(np.exp(_np_log_softmax(combined / T)), expect, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ensemble_logits([s, t], temperature=T, mode="logits").numpy(), (s + t) / 2,
                               rtol=1e-6)


def _softmax_variants():
    import keras

    def dense_softmax():
        i = keras.Input((4,))
        return keras.Model(i, keras.layers.Dense(3, activation="softmax", name="head")(keras.layers.Dense(6)(i)))

    def softmax_layer():
        i = keras.Input((4,))
        return keras.Model(i, keras.layers.Softmax(name="sm")(keras.layers.Dense(3, name="head")(i)))

    def activation_layer():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="head"),
                                 keras.layers.Activation("softmax", name="act")])

    return {"dense": dense_softmax, "softmax_layer": softmax_layer, "activation": activation_layer}


@pytest.mark.parametrize("kind,fragment", [("dense", "Dense 'head'"), ("softmax_layer", "Softmax layer 'sm'"),
                                           ("activation", "Activation('softmax') layer 'act'")])
def test_softmax_teacher_detection(kind, fragment):
    import tensorflow as tf

    from edgekd.distill import ends_in_softmax, teacher_logits_model

    model = _softmax_variants()[kind]()
    assert ends_in_softmax(model)  # the one detector: prune's and QAT's loss choice uses it too
    x = np.random.default_rng(1).normal(size=(7, 4)).astype(np.float32)
    logits_model, detected = teacher_logits_model(model)
    assert fragment in detected
    logits = logits_model.predict(x, verbose=0)
    # softmax of the stripped output reproduces the original probabilities: no double softmax
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits.sum(-1), 1.0)


def test_logits_teacher_is_returned_unchanged():
    import keras

    from edgekd.distill import ends_in_softmax, teacher_logits_model

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    assert not ends_in_softmax(model)
    same, detected = teacher_logits_model(model)
    assert same is model and detected == "logits"
