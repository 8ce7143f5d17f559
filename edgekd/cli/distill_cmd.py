"""``edgekd distill``: distil a teacher (or an ensemble) into a student and save it."""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

import click

from edgekd.cli._common import _LazyHelpOption, check_keras_path, load_keras, student_arch_help, unsafe_option
from edgekd.errors import DataError, InvalidArgumentError


def _build_student_arch(spec: str, input_shape: Sequence[int], num_classes: int):
    """Build ``--student-arch NAME[:k=v,...]`` through the student zoo (``edgekd.students.get``)."""
    from edgekd import students

    return students.get(spec)(input_shape=tuple(input_shape), num_classes=int(num_classes))


def _split_holdout(x, y, fraction: float, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    n_val = max(1, int(round(len(x) * fraction)))
    if len(x) - n_val < 1:
        raise DataError(f"--data holds {len(x)} examples; need at least 2 to keep a validation split.")
    v, t = idx[:n_val], idx[n_val:]
    return (x[t], None if y is None else y[t]), (x[v], None if y is None else y[v])


def _load_data(dataset: Optional[str], data: Optional[str], seed: int):
    """(train (x, y), val (x, y), test (x, y) or None) from --dataset or --data."""
    import numpy as np

    from edgekd import datasets

    if bool(dataset) == bool(data):
        raise InvalidArgumentError("Pass exactly one of --dataset NAME or --data FILE.npz.")
    if dataset:
        ds = datasets.get(dataset)
        return (ds.train.x, ds.train.y), (ds.val.x, ds.val.y), (ds.test.x, ds.test.y)
    split = datasets.load_arrays(data)
    val = test = None
    if data.endswith(".npz"):
        with np.load(data, allow_pickle=False) as f:
            for key, target in (("x_val", "val"), ("x_test", "test")):
                if key in f.files:
                    yk = "y" + key[1:]
                    s = datasets.validate_split(datasets.Split(f[key], f[yk] if yk in f.files else None),
                                                source=f"{data}:{key}")
                    if target == "val":
                        val = (s.x, s.y)
                    else:
                        test = (s.x, s.y)
    train = (split.x, split.y)
    if val is None:
        train, val = _split_holdout(split.x, split.y, 0.15, seed)
    return train, val, test


def _params(model) -> int:
    return int(sum(int(w.numpy().size) for w in model.weights))


def _accuracy(model, split, *, logits_fn=None) -> Optional[float]:
    import numpy as np

    from edgekd.distill.api import evaluate_logits_model

    if split is None or split[1] is None:
        return None
    out = logits_fn(split[0]) if logits_fn is not None else evaluate_logits_model(model, split[0])
    return float(np.mean(out.argmax(-1) == split[1]))


def _save_atomic(model, path: str) -> None:
    """Save ``model`` to a temp ``.keras`` in the output directory, then ``os.replace`` it into place."""
    from edgekd._io import atomic_save  # a temporary left by a killed run goes with the next write there
    from edgekd.errors import OutputError

    try:
        atomic_save(path, model.save)
    except OSError as e:
        raise OutputError(f"Cannot write {path}: {e.strerror}. Choose a writable output path.") from None


@click.command("distill")
@click.option("--teacher", "teachers", multiple=True, required=True, type=str,
              help="Teacher model (.keras/.h5/SavedModel). Repeat for an ensemble.")
@click.option("--student", "student_path", type=str, default=None, help="Student model file (untrained or not).")
@click.option("--student-arch", type=str, default=None, cls=_LazyHelpOption, help_fn=student_arch_help)
@click.option("--dataset", type=str, default=None, help="Bundled dataset (digits).")
@click.option("--data", type=str, default=None,
              help="Transfer set .npz (x[, y]; x_val/y_val, x_test/y_test optional).")
@click.option("--unlabeled", type=str, default=None, help="Extra unlabeled transfer inputs (.npz x or .npy).")
@click.option("--epochs", type=click.IntRange(min=1), required=True, help="Training epochs.")
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
@click.option("--baseline", is_flag=True, help="Also train the student from scratch on the labels, for the table.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed (initial weights, shuffling): the same seed gives the same student.")
@click.option("--qat", is_flag=True,
              help="Then quantization-aware distillation (tfmot) and write OUTPUT's .int8.tflite next to it.")
@click.option("--qat-epochs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Epochs of quantization-aware distillation after --qat.")
@unsafe_option
@click.option("-o", "--output", required=True, type=str, help="Where to save the distilled student (.keras).")
def distill(teachers: tuple[str, ...], student_path: Optional[str], student_arch: Optional[str],
            dataset: Optional[str], data: Optional[str], unlabeled: Optional[str], epochs: int, temperature: float,
            alpha: float, batch_size: int, learning_rate: float, ensemble: str, no_cache: bool, baseline: bool,
            seed: int, qat: bool, qat_epochs: int, unsafe: bool, output: str) -> None:
    """Distil TEACHER(s) into a student and save it to OUTPUT.

    Example: edgekd distill --teacher big.keras --student-arch ds_cnn:width=0.25
    --dataset digits --epochs 30 -o student.keras
    """
    from edgekd._io import writable_parent

    # Cheap checks first: nothing slow runs on input that is going to fail.
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
        from edgekd import students

        students.get(student_arch)  # unknown names/options fail here, before anything loads
    if dataset is None and data is None:
        raise InvalidArgumentError("Pass the transfer set: --dataset digits or --data FILE.npz.")

    import numpy as np

    from edgekd import datasets
    from edgekd.cli._common import console
    from edgekd.distill import Distiller, distill as run_distill, results_table
    from edgekd.distill.losses import check_num_classes

    con = console(stderr=True)
    train, val, test = _load_data(dataset, data, seed)
    extra = datasets.load_arrays(unlabeled).x if unlabeled else None
    if train[1] is None and baseline:
        raise DataError("--baseline trains a student on labels, but the transfer set has none. Drop --baseline.")

    with con.status("Loading models…"):
        teacher_models = [load_keras(p, unsafe=unsafe) for p in teachers]
        if student_path:
            student = load_keras(student_path, unsafe=unsafe)
        else:
            shape = tuple(int(d) for d in teacher_models[0].inputs[0].shape[1:])
            student = _build_student_arch(student_arch, shape, int(teacher_models[0].outputs[0].shape[-1]))
    names = [f"teacher {p}" for p in teachers]
    check_num_classes(teacher_models, student, names=names)
    # Validate the data against the models before any training.
    from edgekd.distill.api import check_transfer_data

    for label, arr in (("--data", train[0]), ("validation data", val[0]), ("--unlabeled", extra)):
        if arr is not None:
            try:
                check_transfer_data(label, arr, teacher_models)
            except DataError as e:
                raise DataError(str(e).replace("`", "")) from None
    num_classes = int(student.outputs[0].shape[-1])
    for label, split in (("--data", train), ("validation", val), ("test", test)):
        if split is not None and split[1] is not None and (split[1].max() >= num_classes or split[1].min() < 0):
            raise DataError(f"{label} labels span {split[1].min()}..{split[1].max()} but the models predict "
                            f"{num_classes} classes. Use labels 0..{num_classes - 1}.")

    probe = Distiller(student, teacher_models, temperature=temperature, ensemble=ensemble)
    for line in probe.detected:
        con.print(f"[dim]teacher output:[/dim] {line}", soft_wrap=True)
    teacher_fn = lambda x: probe.teacher_logits(x)  # noqa: E731 - the ensembled teacher

    rows = [("teacher" + (f" ensemble ×{len(teachers)}" if len(teachers) > 1 else ""), {
        "params": sum(_params(m) for m in teacher_models),
        "val_accuracy": _accuracy(None, val, logits_fn=teacher_fn),
        "test_accuracy": _accuracy(None, test, logits_fn=teacher_fn),
    })]
    if baseline:
        import keras

        keras.utils.set_random_seed(seed)
        scratch = keras.models.clone_model(student)
        scratch.compile(optimizer=keras.optimizers.Adam(learning_rate),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        labeled = train[1] >= 0
        con.print("[bold]Training the student from scratch (baseline)…[/bold]")
        from edgekd.distill.distiller import declared_input_shape, adapt_inputs

        xs = np.asarray(adapt_inputs(train[0][labeled], declared_input_shape(scratch)))
        scratch.fit(xs, train[1][labeled], epochs=epochs, batch_size=batch_size,
                    verbose=1 if sys.stdout.isatty() else 2)
        rows.append(("student from scratch", {
            "params": _params(scratch), "val_accuracy": _accuracy(scratch, val),
            "test_accuracy": _accuracy(scratch, test)}))

    con.print("[bold]Distilling…[/bold]")
    progress = 1 if sys.stdout.isatty() else 2  # Keras' progress bar on a terminal, one line per epoch in logs
    result = run_distill(teacher_models if len(teacher_models) > 1 else teacher_models[0], student,
                         x=train[0], y=train[1], unlabeled_x=extra, epochs=epochs, batch_size=batch_size,
                         temperature=temperature, alpha=alpha, ensemble=ensemble, learning_rate=learning_rate,
                         validation_data=val if val[1] is not None else (val[0],),
                         cache_teacher=False if no_cache else "auto", seed=seed, verbose=progress)
    rows.append(("distilled student", {
        "params": _params(result.student), "val_accuracy": _accuracy(result.student, val),
        "test_accuracy": _accuracy(result.student, test), "agreement": result.metrics.get("agreement")}))
    tflite_path = None
    if qat:
        from edgekd._io import atomic_write_bytes
        from edgekd.convert.runtime import predict
        from edgekd.distill.distiller import declared_input_shape, adapt_inputs
        from edgekd.optimize import qat_then_convert

        s_shape = declared_input_shape(result.student)
        same_input = all(tuple(m.inputs[0].shape[1:]) == tuple(s_shape) for m in teacher_models)
        con.print("[bold]Quantization-aware distillation…[/bold]" if same_input else
                  "[bold]Quantization-aware training[/bold] (the teacher takes another input shape: labels only)…")
        xs = np.asarray(adapt_inputs(train[0], s_shape))
        report = qat_then_convert(result.student, data=(xs, train[1]), epochs=qat_epochs, qat=True,
                                  teacher=teacher_models[0] if same_input and len(teacher_models) == 1 else None,
                                  temperature=temperature, alpha=alpha, batch_size=batch_size, seed=seed,
                                  print_fn=lambda line: con.print(line))
        if test is not None and test[1] is not None:
            xt = np.asarray(adapt_inputs(test[0], s_shape))
            acc = float(np.mean(predict(report.tflite, xt).argmax(-1) == test[1]))
            rows.append(("distilled + QAT (int8)", {"params": _params(result.student), "test_accuracy": acc}))
        tflite_path = os.path.splitext(output)[0] + ".int8.tflite"
    _save_atomic(result.student, output)
    if tflite_path is not None:
        atomic_write_bytes(tflite_path, report.tflite)
    results_table(rows, print_fn=click.echo, title=f"Distillation (T={temperature:g}, alpha={alpha:g})")
    click.echo(f"Saved the distilled student to {output}")
    if tflite_path is not None:
        click.echo(f"Saved the quantization-aware int8 model to {tflite_path}")
