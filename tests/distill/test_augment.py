"""Consistent-view distillation: ``Distiller(augment=...)``, the built-in augmentations, ``recipe="patient"``."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_clean_error, run_cli, run_main
from tests.distill._models import mlp

B = 16


def _recorder_model(name: str, shape, batch: int = B, *, classes: int = 10):
    """A model whose first layer stores the batch it was fed (training or not) in a variable."""
    import keras

    class Recorder(keras.layers.Layer):
        def build(self, input_shape):
            self.seen = self.add_weight(shape=(batch,) + tuple(shape), initializer="zeros", trainable=False,
                                        name="seen")

        def call(self, x):
            self.seen.assign(x)
            return x

        def compute_output_shape(self, input_shape):
            return input_shape

    inputs = keras.Input(shape)
    rec = Recorder(name=f"{name}_rec")
    x = keras.layers.Flatten()(rec(inputs))
    return keras.Model(inputs, keras.layers.Dense(classes)(x), name=name), rec


def _batch(digits, n=B):
    return digits.train.x[:n], digits.train.y[:n]


@pytest.mark.parametrize("augment", ["shift", "mixup", "shift+cutmix"])
def test_teacher_and_student_see_the_same_augmented_batch(digits, augment):
    import keras

    keras.utils.set_random_seed(0)
    teacher, t_rec = _recorder_model("teacher", (8, 8, 1))
    student, s_rec = _recorder_model("student", (8, 8, 1))
    from edgekd.distill import Distiller

    d = Distiller(student, teacher, augment=augment)
    d.compile(optimizer="adam")
    x, y = _batch(digits)
    d.fit(x, y, batch_size=B, epochs=1, shuffle=False, verbose=0)
    t_seen, s_seen = t_rec.seen.numpy(), s_rec.seen.numpy()
    np.testing.assert_array_equal(t_seen, s_seen)  # one view, fed to both
    assert not np.array_equal(t_seen, x)  # and it is augmented
    d.evaluate(x, y, batch_size=B, verbose=0)  # evaluation: no augmentation
    np.testing.assert_array_equal(t_rec.seen.numpy(), x)
    np.testing.assert_array_equal(s_rec.seen.numpy(), x)


def test_lower_resolution_student_gets_the_resized_augmented_view(digits):
    import keras

    from edgekd.distill import Distiller, adapt_inputs

    keras.utils.set_random_seed(1)
    teacher, t_rec = _recorder_model("teacher", (8, 8, 1))
    student, s_rec = _recorder_model("student", (6, 6, 1))
    d = Distiller(student, teacher, augment="shift+mixup")
    d.compile(optimizer="adam")
    x, y = _batch(digits)
    d.fit(x, y, batch_size=B, epochs=1, shuffle=False, verbose=0)
    t_seen = t_rec.seen.numpy()
    assert not np.array_equal(t_seen, x)
    np.testing.assert_allclose(s_rec.seen.numpy(), np.asarray(adapt_inputs(t_seen, (6, 6, 1))), atol=1e-6)


def test_multi_student_distiller_feeds_one_augmented_view_to_teacher_and_students(digits, teacher):
    import keras

    from edgekd.distill import MultiStudentDistiller, adapt_inputs
    from edgekd.errors import InvalidArgumentError

    keras.utils.set_random_seed(2)
    t, t_rec = _recorder_model("teacher", (8, 8, 1))
    s1, rec1 = _recorder_model("s1", (8, 8, 1))
    s2, rec2 = _recorder_model("s2", (6, 6, 1))
    d = MultiStudentDistiller(t, [s1, s2], augment="shift+mixup")
    d.compile(optimizer="adam")
    x, y = _batch(digits)
    logs = d.fit(x, y, batch_size=B, epochs=1, shuffle=False, verbose=0).history
    seen = t_rec.seen.numpy()
    assert not np.array_equal(seen, x)  # augmented,
    np.testing.assert_array_equal(rec1.seen.numpy(), seen)  # the same view for every student
    np.testing.assert_allclose(rec2.seen.numpy(), np.asarray(adapt_inputs(seen, (6, 6, 1))), atol=1e-6)
    assert {"s1_hard_loss", "s1_accuracy", "s2_hard_loss", "s2_accuracy"} <= set(logs)
    d.evaluate(x, y, batch_size=B, verbose=0)  # evaluation: no augmentation
    for rec in (t_rec, rec1):
        np.testing.assert_array_equal(rec.seen.numpy(), x)
    with pytest.raises(InvalidArgumentError, match="cache_teacher=True cannot be combined with augment="):
        MultiStudentDistiller(teacher, [mlp(8, name="a")], cache_teacher=True, augment="mixup")
    m = MultiStudentDistiller(teacher, [mlp(8, name="b")], augment="mixup:alpha=0.3")
    again = MultiStudentDistiller.from_config(m.get_config())
    assert isinstance(again.augment, type(m.augment)) and again.augment.get_config() == m.augment.get_config()


def _sources(x_mixed, row):
    """The example indices a mixed one-hot input row is made of (its nonzero entries)."""
    return set(np.flatnonzero(x_mixed[row] > 1e-6).tolist())


def test_mixup_mixes_labels_alike_and_unlabeled_pairs_get_no_label():
    import tensorflow as tf

    from edgekd.distill import augment

    n = 10
    x = np.eye(n, dtype=np.float32)  # example i is e_i: the mixed input tells its two sources and weights
    y = np.arange(n)
    y[[2, 7]] = -1  # unlabeled
    layer = augment.Mixup(alpha=1.0, seed=5)
    rows, labeled = augment.soft_labels(tf.constant(y), n)
    xm, ym, lab = (np.asarray(v) for v in layer.mix(tf.constant(x), rows, labeled))
    np.testing.assert_allclose(xm.sum(1), 1.0, atol=1e-6)  # convex combinations
    assert (xm.max(1) < 1 - 1e-3).sum() >= 5  # really mixed (λ ~ U(0, 1))
    for i in range(n):
        src = _sources(xm, i)
        expect_labeled = all(y[j] >= 0 for j in src)
        assert bool(lab[i]) == expect_labeled
        if expect_labeled:
            np.testing.assert_allclose(ym[i], xm[i], atol=1e-6)  # the label mixed with the input's weights
        else:
            np.testing.assert_array_equal(ym[i], 0.0)  # soft loss only


def test_cutmix_label_weight_is_the_area_kept():
    import tensorflow as tf

    from edgekd.distill import augment

    n = 8
    x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 8, 8, 1)).copy()
    layer = augment.CutMix(seed=2)
    rows, labeled = augment.soft_labels(tf.constant(np.arange(n)), n)
    xm, ym, lab = (np.asarray(v) for v in layer.mix(tf.constant(x), rows, labeled))
    assert lab.all()
    np.testing.assert_allclose(ym.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(xm.mean(axis=(1, 2, 3)), ym @ np.arange(n), atol=1e-5)  # weight = area
    assert (ym.max(1) < 1).any()


def test_unlabeled_batch_with_mixup_trains_on_the_soft_loss(digits, teacher):
    from edgekd.distill import Distiller

    x = digits.train.x[:64]
    d = Distiller(mlp(8, name="s"), teacher, augment="mixup", alpha=0.3)
    d.compile(optimizer="adam", metrics=["accuracy"])
    logs = d.fit(x, -np.ones(64, np.int64), batch_size=32, epochs=1, verbose=0).history
    assert logs["loss"][0] == pytest.approx(logs["soft_loss"][0], rel=1e-5)  # no hard term at all
    assert logs["hard_loss"][0] == 0.0


def test_cache_and_augment_are_refused_and_distill_turns_the_cache_off(digits, teacher):
    from edgekd.distill import Distiller, distill
    from edgekd.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="cache_teacher=True cannot be combined with augment="):
        Distiller(mlp(8, name="s"), teacher, cache_teacher=True, augment="shift")
    x, y = digits.train.x[:64], digits.train.y[:64]
    with pytest.raises(InvalidArgumentError, match="cannot be combined"):
        distill(teacher, mlp(8, name="s"), x=x, y=y, epochs=1, cache_teacher=True, augment="mixup", verbose=0)
    r = distill(teacher, mlp(8, name="s2"), x=x, y=y, epochs=1, recipe="patient", verbose=0)
    assert (r.cached, r.augment, r.recipe, r.epochs) == (True, None, "patient", 1)  # 8x8: no augmentation
    r = distill(teacher, mlp(8, name="s4"), x=x, y=y, epochs=1, recipe="patient", augment="mixup", verbose=0)
    assert (r.cached, r.augment, r.recipe) == (False, "mixup", "patient")
    r = distill(teacher, mlp(8, name="s3"), x=x, y=y, epochs=1, verbose=0)
    assert (r.cached, r.augment, r.recipe) == (True, None, None)
    d = Distiller(mlp(8, name="s5"), teacher, augment="shift")  # logits cached by hand: refused too
    d.compile(optimizer="adam")
    with pytest.raises(InvalidArgumentError, match="Cached teacher logits cannot be used with augment="):
        d.fit({"inputs": x, "teacher_logits": d.teacher_logits(x)}, y, epochs=1, verbose=0)


def test_config_round_trip_and_registry(teacher):
    import keras

    from edgekd.distill import Distiller, augment
    from edgekd.errors import InvalidArgumentError

    for name in augment.names():
        layer = augment.get(name, seed=3)
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    layer = augment.get("shift:factor=0.25+mixup:alpha=0.2")
    assert isinstance(layer, augment.Compose) and layer.mixes_labels
    assert [a.get_config()["factor" if i == 0 else "alpha"] for i, a in enumerate(layer.augments)] == [0.25, 0.2]
    d = Distiller(mlp(8, name="s"), teacher, augment=layer)
    again = Distiller.from_config(d.get_config())
    assert again.augment.get_config()["augments"] == layer.get_config()["augments"]
    with pytest.raises(InvalidArgumentError, match="crop, cutmix, flip, mixup, shift, specaugment, time_shift"):
        augment.get("rotate")
    with pytest.raises(InvalidArgumentError, match="Invalid option for augmentation 'mixup'"):
        augment.get("mixup:beta=2")
    with pytest.raises(InvalidArgumentError, match="alpha"):
        augment.Mixup(alpha=0)


def test_keras_layer_and_callable_augment(digits, teacher):
    import keras

    from edgekd.distill import Distiller

    x, y = digits.train.x[:32], digits.train.y[:32]
    calls = []

    def flip(batch):
        calls.append(1)  # traced once per train function
        return batch[:, :, ::-1, :]

    for aug in (keras.layers.RandomTranslation(0.2, 0.2, seed=0), flip):
        d = Distiller(mlp(8, name="s"), teacher, augment=aug)
        d.compile(optimizer="adam")
        assert np.isfinite(d.fit(x, y, batch_size=16, epochs=1, verbose=0).history["loss"][0])
    assert calls


def test_spectrogram_augmentations_shapes_and_masks():
    import tensorflow as tf

    from edgekd.distill import augment

    x = tf.ones((32, 40, 10, 1))
    masked = np.asarray(augment.SpecAugment(time_masks=1, time_width=0.25, freq_masks=1, freq_width=0.3,
                                            seed=0)(x, training=True))[..., 0]
    assert masked.shape == (32, 40, 10) and set(np.unique(masked)) <= {0.0, 1.0}
    rows, cols = (masked == 0).all(axis=2), (masked == 0).all(axis=1)  # zeroed time frames, frequency bins
    # every zero lies in a zeroed frame or bin: whole bands, nothing else
    np.testing.assert_array_equal(masked == 0, rows[:, :, None] | cols[:, None, :])
    for r, c in zip(rows, cols):  # one band of each kind, at most 10 frames and 3 bins wide (a whole
        for band, widest in ((r, 10), (c, 3)):  # frame band also zeroes every bin: skip that case)
            if not band.all():
                assert band.sum() <= widest and np.count_nonzero(np.diff(band.astype(int)) == 1) <= 1
    assert rows.any(axis=1).sum() >= 16 and cols.any(axis=1).sum() >= 16  # masking happened (widths 0..max)
    frames = np.tile(np.arange(1, 41, dtype=np.float32)[None, :, None], (32, 1, 10))  # frame t holds t + 1
    shifted = np.asarray(augment.TimeShift(max_shift=0.25, seed=0)(tf.constant(frames), training=True))
    assert shifted.shape == (32, 40, 10)
    offsets = []
    for out in shifted:
        k = int(np.argmax(out[:, 0] > 0)) + 1 - int(out[out[:, 0] > 0][0, 0])  # frame t now holds frame t - k
        expected = np.where((np.arange(40) - k >= 0) & (np.arange(40) - k < 40), np.arange(40) - k + 1, 0)
        np.testing.assert_array_equal(out, np.repeat(expected[:, None], 10, axis=1).astype(np.float32))
        offsets.append(k)
    assert max(abs(k) for k in offsets) <= 10 and len(set(offsets)) > 3  # |k| <= 0.25 * 40, varied
    np.testing.assert_array_equal(np.asarray(augment.TimeShift()(x, training=False)), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(augment.SpecAugment()(x, training=False)), np.asarray(x))


def test_distill_with_the_patient_recipe_steps_the_optimizer_along_its_schedule(digits, teacher):
    import keras

    from edgekd.distill import distill
    from edgekd.distill.recipes import get_recipe, learning_rate_schedule

    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    x, y = digits.train.x[:320], digits.train.y[:320]  # 5 batches of 64 an epoch
    result = distill(teacher, mlp(8, name="s"), x=x, y=y, recipe="patient", epochs=4, learning_rate=0.01,
                     seed=0, verbose=0, callbacks=[Record()])
    assert result.recipe == "patient" and len(seen) == 20
    schedule = learning_rate_schedule(get_recipe("patient"), 0.01, epochs=4, steps_per_epoch=5)
    np.testing.assert_allclose(seen, [float(schedule(s)) for s in range(20)], rtol=1e-5, atol=1e-8)
    assert seen[0] < seen[1] and max(seen) <= 0.01 and seen[-1] < 0.001  # warm-up, then decay towards 0


def test_patient_schedule_warms_up_then_decays_by_cosine():
    from edgekd.distill.recipes import default_augment, get_recipe, input_kind, learning_rate_schedule
    from edgekd.errors import InvalidArgumentError

    recipe = get_recipe("patient")
    schedule = learning_rate_schedule(recipe, 0.01, epochs=20, steps_per_epoch=10)  # 200 steps, 10 warm-up
    lr = np.array([float(schedule(s)) for s in range(201)])
    warm = int(np.ceil(recipe.warmup_fraction * 200))
    assert lr[0] == 0.0 and lr[warm] == pytest.approx(0.01)
    assert np.all(np.diff(lr[:warm + 1]) > 0)  # linear warm-up
    np.testing.assert_allclose(np.diff(lr[:warm + 1]), 0.01 / warm, rtol=1e-4)
    assert np.all(np.diff(lr[warm:]) <= 1e-9)  # then decreasing
    mid = warm + (200 - warm) // 2
    assert lr[mid] == pytest.approx(0.005, rel=0.02) and lr[200] == pytest.approx(0.0, abs=1e-9)  # cosine to 0
    assert input_kind((8, 8, 1)) == "small_image" and input_kind((49, 10, 1)) == "spectrogram"
    assert default_augment(recipe, (32, 32, 3)) == "shift+mixup" and default_augment(recipe, (8, 8, 1)) is None
    assert default_augment(recipe, (49, 10, 1)) == "time_shift+specaugment+mixup"
    with pytest.raises(InvalidArgumentError, match="patient"):
        get_recipe("impatient")


def test_cli_recipe(tmp_path, digits, teacher, capsys):
    teacher.save(tmp_path / "teacher.keras")
    out = tmp_path / "student.keras"
    proc = run_cli("distill", "--teacher", tmp_path / "teacher.keras", "--student-arch", "small_cnn:width=0.25",
                   "--dataset", "digits", "--recipe", "patient", "--epochs", "1", "--augment", "shift+cutmix",
                   "--baseline", "-o", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists() and "distilled student" in proc.stdout
    # the fair baseline: trained as the distilled student, on the labels alone
    assert "student from scratch: the labels alone, 1 epoch, recipe 'patient', augmentation shift+cutmix" \
        in proc.stdout
    proc = run_main(capsys, "distill", "--teacher", tmp_path / "teacher.keras", "--student-arch", "small_cnn",
                    "--dataset", "digits", "-o", tmp_path / "none.keras")
    assert_clean_error(proc, "--epochs", "--recipe patient")
    proc = run_main(capsys, "distill", "--teacher", tmp_path / "teacher.keras", "--student-arch", "small_cnn",
                    "--dataset", "digits", "--recipe", "patient", "--augment", "rotate", "-o",
                    tmp_path / "x.keras")
    assert_clean_error(proc, "rotate", "mixup")
    assert not (tmp_path / "none.keras").exists() and not (tmp_path / "x.keras").exists()


def test_fit_refuses_an_unknown_recipe_before_loading(digits):
    from edgekd.errors import InvalidArgumentError
    from edgekd.fit import fit
    from edgekd.fit.measurement import Setup

    assert Setup.__dataclass_fields__["recipe"].default is None
    train, val = (digits.train.x, digits.train.y), (digits.val.x, digits.val.y)
    with pytest.raises(InvalidArgumentError, match="recipe"):
        fit("/nonexistent/teacher.keras", train=train, val=val, board="nano33ble", recipe="impatient")


def test_cli_fit_recipe_trains_each_candidate_with_the_patient_recipe(small_cnn_path, tmp_path, monkeypatch, capsys):
    import json

    from click.testing import CliRunner

    import edgekd.distill
    from edgekd.cli import cli

    results = []
    real = edgekd.distill.distill

    def recording(*args, **kwargs):  # the real distill runs; its results are kept
        results.append(real(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(edgekd.distill, "distill", recording)
    out = tmp_path / "fit"
    run = CliRunner().invoke(cli, ["fit", "--teacher", small_cnn_path, "--dataset", "digits", "--board", "nano33ble",
                                   "--arch", "small_cnn", "--trials", "1", "--epochs", "2", "--no-prune",
                                   "--recipe", "patient", "-o", str(out)])
    assert run.exit_code == 0, run.output
    assert results and all((r.recipe, r.augment, r.cached, r.epochs) == ("patient", None, True, 2)
                           for r in results)  # 8x8 digits: no augmentation, the teacher cached
    assert all(len(r.history["loss"]) == 2 for r in results)
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert [t["epochs_run"] for t in trials if t["state"] == "passed"] == [2]
    # the recipe is one of the study's settings: the study is not resumed without it
    import optuna

    (name,) = optuna.get_all_study_names(f"sqlite:///{out / 'study.db'}")
    assert ":recipe=patient:" in name
    before = len(optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}").trials)
    proc = run_main(capsys, "fit", "--teacher", small_cnn_path, "--dataset", "digits", "--board", "nano33ble",
                    "--arch", "small_cnn", "--trials", "2", "--epochs", "2", "--no-prune", "--study-name", name,
                    "-o", out)
    assert_clean_error(proc, "different settings (recipe)")
    assert len(optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}").trials) == before
