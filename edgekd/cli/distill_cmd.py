"""``edgekd distill``: distil a teacher (or an ensemble) into a student and save it."""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

import click
import numpy as np

from edgekd.cli._common import (_LazyHelpOption, check_keras_path, console, data_for_model, load_dataset, load_keras,
                                student_arch_help, unsafe_option)
from edgekd.errors import DataError, InvalidArgumentError, OutputError
from edgekd import datasets, students
from edgekd._io import writable_parent
from edgekd.convert.runtime import predict
from edgekd.datasets import resize
from edgekd.distill.api import evaluate_logits_model
from edgekd.distill.losses import check_num_classes, declared_input_shape
from edgekd.distill.recipes import get_recipe
from edgekd.optimize import qat_then_convert


def _check_options(teachers, student_path, student_arch, dataset, data, output) -> None:
    """Cheap checks first: nothing slow runs on input that is going to fail."""
    if bool(student_path) == bool(student_arch):
        raise InvalidArgumentError("Pass exactly one of --student S.keras or --student-arch NAME[:k=v,...].")
    if not output.endswith(".keras"):
        raise InvalidArgumentError(f"Invalid value for -o: {output!r}. Expected a path ending in .keras.")
    if os.path.isdir(output):
        raise InvalidArgumentError(f"-o {output} is a directory. Pass a file path ending in .keras.")
    writable_parent(output)
    for path in teachers:
        check_keras_path(path, what="Teacher")
    if student_path:
        check_keras_path(student_path, what="Student")
    if student_arch:
        students.get(student_arch)  # unknown names/options fail here, before anything loads
    if dataset is None and data is None:
        raise InvalidArgumentError("Pass the transfer set: --dataset digits or --data FILE.npz.")


def _check_recipe(epochs: Optional[int], recipe: Optional[str], augment: str) -> tuple[int, Any]:
    """(epochs, augment= of distill) from --epochs/--recipe/--augment; an unknown augmentation fails here."""
    if epochs is None:
        if recipe is None:
            raise InvalidArgumentError("Pass --epochs N (or --recipe patient, which trains "
                                       f"{get_recipe('patient').epochs} epochs unless --epochs is given).")
        epochs = get_recipe(recipe).epochs
    if augment.strip().lower() in ("auto", "none", ""):
        return epochs, "auto" if augment.strip().lower() == "auto" else None
    from edgekd.distill import augment as augment_mod  # TensorFlow: only when an augmentation is named

    augment_mod.get(augment)  # an unknown name fails before anything loads
    return epochs, augment


def _load_models(teachers, student_path, student_arch, unsafe, con) -> tuple[list, Any]:
    """(teacher models, student): the student from its file, or built by the zoo for the first teacher's input."""
    with con.status("Loading models…"):
        teacher_models = [load_keras(p, unsafe=unsafe) for p in teachers]
        if student_path:
            student = load_keras(student_path, unsafe=unsafe)
        else:
            student = students.get(student_arch)(input_shape=tuple(teacher_models[0].inputs[0].shape[1:]),
                                                 num_classes=int(teacher_models[0].outputs[0].shape[-1]))
    check_num_classes(teacher_models, student, names=[f"teacher {p}" for p in teachers])
    return teacher_models, student


def _check_data(ds, unlabeled: Optional[str], teacher_models, student, baseline: bool, con) -> tuple[Any, Any]:
    """(dataset, extra unlabeled inputs) checked against a teacher's input and the student's classes; says which
    splits train, validate and test, and the student's input shape (what the device must feed it)."""
    shapes = [declared_input_shape(m) for m in teacher_models]
    shape = next((s for s in shapes if s is not None and tuple(s) == ds.input_shape), shapes[0])
    ds = data_for_model(ds, input_shape=shape, num_classes=int(student.outputs[0].shape[-1]), offer_resize=False)
    extra = None
    if unlabeled:
        extra = data_for_model(datasets.load(unlabeled), input_shape=shape, offer_resize=False).train.x
    if baseline and ds.train.labeled().y is None:
        raise DataError("--baseline trains a student on labels, but the transfer set has none. Drop --baseline.")
    con.print(f"Training on {ds.train.describe()}; validating on {ds.val.describe()}"
              + (f"; testing on {ds.test.describe()}" if ds.test is not None else "") + ".", soft_wrap=True)
    s_shape = declared_input_shape(student)
    s_text = "any shape" if s_shape is None else str(tuple(s_shape))
    resized = s_shape is not None and tuple(s_shape) != ds.input_shape
    how = (f": the {ds.input_shape} data is resized to it (bilinear, edgekd.datasets.resize); the device must "
           f"feed it {s_text}") if resized else ""
    con.print(f"Student input: {s_text}{how}.", soft_wrap=True)
    return ds, extra


def _params(model) -> int:
    return int(sum(int(w.numpy().size) for w in model.weights))


def _accuracy(model, split, *, logits_fn=None) -> Optional[float]:
    """Accuracy on the split's labelled examples (None without any)."""

    split = None if split is None else split.labeled()
    if split is None or split.y is None:
        return None
    out = logits_fn(split.x) if logits_fn is not None else evaluate_logits_model(model, split.x)
    return float(np.mean(out.argmax(-1) == split.y))


def _row(model, ds, **more) -> dict:
    return {"params": _params(model), "val_accuracy": _accuracy(model, ds.val),
            "test_accuracy": _accuracy(model, ds.test), **more}


def _baseline(student, ds, *, epochs: int, batch_size: int, learning_rate: float, recipe: Optional[str],
              augment: Any, seed: int, con) -> dict:
    """The table row of the student trained from scratch on the labels, with the distilled student's recipe."""
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    from edgekd.distill import train_from_scratch  # TensorFlow (the Keras trainer), as above

    keras.utils.set_random_seed(seed)  # the clone's initial weights: the same --seed, the same baseline
    scratch = keras.models.clone_model(student)
    con.print("[bold]Training the student from scratch (baseline)…[/bold]")
    labeled = ds.train.labeled()
    train_from_scratch(scratch, x=labeled.x, y=labeled.y, epochs=epochs, batch_size=batch_size,
                       learning_rate=learning_rate, recipe=recipe, augment=augment, seed=seed,
                       verbose=1 if sys.stdout.isatty() else 2)
    return _row(scratch, ds)


def _qat(result, teacher_models, ds, *, qat_epochs: int, temperature: float, alpha: float, batch_size: int,
         seed: int, con) -> tuple[bytes, Optional[float]]:
    """Quantization-aware distillation of the student: (int8 .tflite, its test accuracy or None)."""
    s_shape = declared_input_shape(result.student)
    same_input = all(tuple(m.inputs[0].shape[1:]) == tuple(s_shape) for m in teacher_models)
    con.print("[bold]Quantization-aware distillation…[/bold]" if same_input else
              "[bold]Quantization-aware training[/bold] (the teacher takes another input shape: labels only)…")
    report = qat_then_convert(result.student, data=(resize(ds.train.x, s_shape), ds.train.y), epochs=qat_epochs,
                              qat=True, teacher=teacher_models[0] if same_input and len(teacher_models) == 1 else None,
                              temperature=temperature, alpha=alpha, batch_size=batch_size, seed=seed,
                              print_fn=lambda line: con.print(line))
    test = None if ds.test is None else ds.test.labeled()
    if test is None or test.y is None:
        return report.tflite, None
    return report.tflite, float(np.mean(predict(report.tflite, resize(test.x, s_shape)).argmax(-1) == test.y))


def _save(student, output: str, tflite: Optional[bytes]) -> None:
    """The student (temp .keras in the output directory, then ``os.replace``) and the QAT int8 model beside it."""
    from edgekd._io import atomic_save, atomic_write_bytes  # a temporary left by a killed run goes with the next write

    try:
        atomic_save(output, student.save)
        if tflite is not None:
            atomic_write_bytes(os.path.splitext(output)[0] + ".int8.tflite", tflite)
    except OSError as e:
        raise OutputError(f"Cannot write {output}: {e.strerror}. Choose a writable output path.") from None


@click.command("distill")
@click.option("--teacher", "teachers", multiple=True, required=True, type=str,
              help="Teacher model (.keras/.h5/SavedModel). Repeat for an ensemble.")
@click.option("--student", "student_path", type=str, default=None, help="Student model file (untrained or not).")
@click.option("--student-arch", type=str, default=None, cls=_LazyHelpOption, help_fn=student_arch_help)
@click.option("--dataset", type=str, default=None, help="Bundled dataset (digits).")
@click.option("--data", type=str, default=None,
              help="Transfer set: a .npz or folder with x (and y, -1 = unlabeled); x_val/y_val validate (else 15% "
                   "of x is held out), x_test/y_test test (docs/data.md).")
@click.option("--unlabeled", type=str, default=None, help="Extra unlabeled transfer inputs (.npz x or .npy).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs (required without --recipe; --recipe patient: 150 by default).")
@click.option("--recipe", type=click.Choice(["patient"]), default=None,
              help="patient: warm-up then cosine decay of the learning rate, long training, and the teacher and "
                   "student fed the same augmented view (docs/distill.md).")
@click.option("--augment", type=str, default="auto", show_default=True,
              help="Augmentation both teacher and student see: built-ins joined with '+' (shift, crop, flip, "
                   "time_shift, specaugment, mixup, cutmix; options as mixup:alpha=0.2), 'none', or 'auto' (the "
                   "recipe's, by input kind; none without --recipe). Turns the teacher cache off.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True,
              help="Softmax temperature of the soft targets (higher: softer, more of the teacher's dark knowledge).")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Weight of the hard-label loss (1-alpha for the soft loss).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Examples per step.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True,
              help="Adam learning rate of the student.")
@click.option("--ensemble", type=click.Choice(["probs", "logits"]), default="probs", show_default=True,
              help="Average the teachers' tempered probabilities or their logits.")
@click.option("--no-cache", is_flag=True, help="Run the teacher every batch instead of caching its logits.")
@click.option("--baseline", is_flag=True, help="Also train the student from scratch on the labels, for the table "
              "(with the same --recipe and --augment, so a gain is the teacher's).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed (initial weights, shuffling): the same seed gives the same student.")
@click.option("--qat", is_flag=True,
              help="Then quantization-aware distillation (tfmot) and write OUTPUT's .int8.tflite next to it.")
@click.option("--qat-epochs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Epochs of quantization-aware distillation after --qat.")
@unsafe_option
@click.option("-o", "--output", required=True, type=str, help="Where to save the distilled student (.keras).")
def distill(teachers: tuple[str, ...], student_path: Optional[str], student_arch: Optional[str],
            dataset: Optional[str], data: Optional[str], unlabeled: Optional[str], epochs: Optional[int],
            recipe: Optional[str], augment: str, temperature: float, alpha: float, batch_size: int,
            learning_rate: float, ensemble: str, no_cache: bool, baseline: bool,
            seed: int, qat: bool, qat_epochs: int, unsafe: bool, output: str) -> None:
    """Distil TEACHER(s) into a student and save it to OUTPUT.

    Example: edgekd distill --teacher big.keras --student-arch ds_cnn:width=0.25
    --dataset digits --epochs 30 -o student.keras
    """
    from edgekd.distill import Distiller, distill as run_distill, results_table  # imports TensorFlow

    _check_options(teachers, student_path, student_arch, dataset, data, output)
    epochs, augment_arg = _check_recipe(epochs, recipe, augment)
    con = console(stderr=True)
    ds = load_dataset(dataset, data).with_validation(0.15, seed=seed)
    teacher_models, student = _load_models(teachers, student_path, student_arch, unsafe, con)
    ds, extra = _check_data(ds, unlabeled, teacher_models, student, baseline, con)

    probe = Distiller(student, teacher_models, temperature=temperature, ensemble=ensemble)
    for line in probe.detected:
        con.print(f"[dim]teacher output:[/dim] {line}", soft_wrap=True)
    if probe.detected_student != "logits":
        con.print(f"[dim]student output:[/dim] {probe.detected_student}", soft_wrap=True)
    rows = [("teacher" + (f" ensemble ×{len(teachers)}" if len(teachers) > 1 else ""), {
        "params": sum(_params(m) for m in teacher_models),
        "val_accuracy": _accuracy(None, ds.val, logits_fn=probe.teacher_logits),
        "test_accuracy": _accuracy(None, ds.test, logits_fn=probe.teacher_logits)})]
    if baseline:
        rows.append(("student from scratch", _baseline(
            student, ds, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, recipe=recipe,
            augment=augment_arg, seed=seed, con=con)))
    con.print("[bold]Distilling…[/bold]")
    val = ds.val.labeled()
    result = run_distill(teacher_models if len(teacher_models) > 1 else teacher_models[0], student,
                         x=ds.train.x, y=ds.train.y, unlabeled_x=extra, epochs=epochs, batch_size=batch_size,
                         temperature=temperature, alpha=alpha, ensemble=ensemble, learning_rate=learning_rate,
                         validation_data=(val.x, val.y) if val.y is not None else (val.x,),
                         cache_teacher=False if no_cache else "auto", seed=seed, recipe=recipe,
                         augment=augment_arg,
                         verbose=1 if sys.stdout.isatty() else 2)  # a progress bar on a terminal, lines in logs
    rows.append(("distilled student", _row(result.student, ds, agreement=result.metrics.get("agreement"))))
    tflite = None
    if qat:
        tflite, acc = _qat(result, teacher_models, ds, qat_epochs=qat_epochs, temperature=temperature,
                           alpha=alpha, batch_size=batch_size, seed=seed, con=con)
        if acc is not None:
            rows.append(("distilled + QAT (int8)", {"params": _params(result.student), "test_accuracy": acc}))
    _save(result.student, output, tflite)
    results_table(rows, print_fn=click.echo, title=f"Distillation (T={temperature:g}, alpha={alpha:g})")
    if baseline:
        click.echo(f"student from scratch: the labels alone, {epochs} epoch{'s' * (epochs != 1)}, "
                   + (f"recipe {recipe!r}" if recipe else "constant learning rate") + ", augmentation "
                   + (result.augment or "none") + " (as the distilled student)")
    click.echo(f"Saved the distilled student to {output}")
    if tflite is not None:
        click.echo(f"Saved the quantization-aware int8 model to {os.path.splitext(output)[0]}.int8.tflite")
