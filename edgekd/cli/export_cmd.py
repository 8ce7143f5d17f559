"""``edgekd export``: Keras model → int8 TFLite → C arrays + op resolver."""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

import click
from rich.markup import escape
from rich.table import Table

from edgekd.cli._common import (check_keras_path, check_output, console, data_for_model, load_dataset, load_keras,
                                load_labels, parse_shape, resize_option, unsafe_option)
from edgekd.boards import runtime as runtimes
from edgekd.cli._common import echo_json
from edgekd.engine import ENGINES
from edgekd.engine import ops as engine_ops
from edgekd.convert import (DENSE_CHOICES, choose_dense_quantization, convert, dense_quantization, evaluate_conversion,
                            model_input_shape)
from edgekd.errors import DataError, invalid_value
from edgekd.export import validate_c_name, write_export
from edgekd.export.ops import resolver_calls
from edgekd.flatbuffer import read_tflite
from edgekd.model import ConvertedModel
from edgekd.optimize import qat_then_convert


@click.command("export")
@click.argument("model", type=click.Path(dir_okay=True, path_type=str))
@click.option("--dataset", type=str, default=None, help="Bundled dataset for calibration/validation (digits).")
@click.option("--rep-data", "rep_data", type=str, default=None,
              help="Representative data for calibration (x) and validation (x_test, else x_val, else x): a .npz, "
                   ".npy or folder of them (docs/data.md).")
@resize_option
@click.option("--mode", type=click.Choice(["int8", "float16", "dynamic", "float32"]), default="int8",
              show_default=True, help="int8 = full integer, builtin int8 ops only (for microcontrollers).")
@click.option("--target", type=click.Choice(["any", "arduino", "platformio", "esp-idf"]), default="any",
              show_default=True,
              help="Firmware target whose TFLM runtime must compute the model (ops, Dense quantization); "
                   "any = every target.")
@click.option("--dense-quantization", "dense_choice", type=click.Choice(DENSE_CHOICES), default="auto",
              show_default=True,
              help="int8 Dense weights per channel or per tensor. auto: per tensor where the target's runtime lacks "
                   "per-channel FULLY_CONNECTED; else both are converted and per tensor is kept when it passes the "
                   "accuracy gate with no larger TFLM arena + flatbuffer.")
@click.option("--engine", type=click.Choice(ENGINES), default="interpreter", show_default=True,
              help="interpreter: the flatbuffer as a C array + op resolver for TFLM's MicroInterpreter. compiled: "
                   "the model as C++ (model_engine.h/.cc) calling the runtime's kernels directly, one static "
                   "activation buffer planned offline (int8 models).")
@click.option("--runtime", "runtime_id", type=str, default=None,
              help="TFLM runtime whose kernels the compiled engine calls (chirale-2.0.0, esp-tflite-micro-1.4.0); "
                   "default: --target's, else chirale-2.0.0.")
@click.option("--name", default="model", show_default=True, help="C symbol stem: g_NAME_data, g_NAME_data_len.")
@click.option("--labels", "labels_file", type=str, default=None, help="Class labels: text (one per line) or JSON.")
@click.option("--input-shape", type=str, default=None, help="H,W,C when the model's input shape is unknown.")
@click.option("--float-io", is_flag=True, help="int8 model with float32 input/output (QUANTIZE/DEQUANTIZE at edges).")
@click.option("--num-calibration-samples", type=click.IntRange(min=1), default=200, show_default=True,
              help="Representative examples the int8 converter calibrates activation ranges on.")
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Fail (exit 1) when int8 accuracy is lower than float by more than this many points.")
@click.option("--task", type=click.Choice(["auto", "classification", "regression"]), default="auto",
              show_default=True, help="Classifier outputs are gated on accuracy/top-1, regression outputs "
                                      "(autoencoders, values) on --min-snr-db; auto decides from the outputs.")
@click.option("--min-snr-db", type=float, default=30.0, show_default=True,
              help="Fail (exit 1) when regression outputs' SNR against the float model is below this.")
@unsafe_option
@click.option("--qat", is_flag=True, help="Quantization-aware fine-tuning (tfmot) before conversion; needs labels.")
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Fine-tuning epochs for --qat/--prune.")
@click.option("--prune", "prune_sparsity", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help="Magnitude-prune to this sparsity first (shrinks the gzip'd download, not RAM/latency).")
@click.option("--json", "as_json", is_flag=True, help="Print export.json instead of the table.")
@click.option("-o", "--output", "outdir", required=True, type=str, help="Output directory.")
def export(model: str, dataset: Optional[str], rep_data: Optional[str], mode: str, target: str, dense_choice: str,
           name: str,
           labels_file: Optional[str], input_shape: Optional[str], float_io: bool, num_calibration_samples: int,
           max_accuracy_drop: float, task: str, min_snr_db: float, unsafe: bool, qat: bool, epochs: int,
           prune_sparsity: Optional[float], as_json: bool, outdir: str, resize: bool, engine: str,
           runtime_id: Optional[str]) -> None:
    """Convert MODEL (.keras, .h5, SavedModel dir, or .tflite) and write C arrays to OUTPUT.

    Writes model.tflite, model_data.h, model_data.cc, model_ops.h (a
    MicroMutableOpResolver with exactly the model's ops) and export.json;
    with --engine compiled, model_engine.h/.cc (the model as code) instead of
    the flatbuffer array and model_ops.h.
    """
    # Cheap checks first: nothing slow runs on input that is going to fail.
    validate_c_name(name)
    check_output(outdir)
    is_tflite = model.lower().endswith(".tflite") and not os.path.isdir(model)
    if not is_tflite:
        check_keras_path(model)
    shape = parse_shape(input_shape)
    labels = load_labels(labels_file)
    ds = load_dataset(dataset, rep_data, option="--rep-data")
    con = console(stderr=True)
    runtime_target = None if target == "any" else target
    runtime, runtime_target = _engine_runtime(engine, runtime_id, runtime_target, mode)
    written = {"engine": engine, "runtime": runtime}  # write_export compiles the engine before writing

    if is_tflite:
        _check_runtime(read_tflite(model), runtime_target, engine)  # verifies: a missing/corrupt file is an error
        with open(model, "rb") as f:
            data = f.read()
        result = write_export(outdir, data, name=name, labels=labels, source_model=model, **written)
        _finish(result, None, as_json)
        return

    dense = _dense_option(dense_choice, runtime_target, fine_tuned=qat or prune_sparsity is not None)

    if mode == "int8" and ds is None:
        raise DataError("int8 conversion needs representative data: pass --dataset digits or --rep-data FILE.npz.")
    with con.status("Loading model…"):
        keras_model = load_keras(model, unsafe=unsafe, input_shape=shape)
    num_outputs = keras_model.outputs[0].shape[-1] if getattr(keras_model, "outputs", None) else None
    source_shape = train = evaluation = None
    if ds is not None:
        source_shape = ds.input_shape
        ds = data_for_model(ds, input_shape=model_input_shape(keras_model, input_shape=shape),
                            num_classes=num_outputs, resize=resize, print_fn=con.print)
        train, evaluation = ds.train, ds.evaluation.labeled()
    optimized = None
    if qat or prune_sparsity is not None:
        if mode != "int8":
            raise DataError("--qat and --prune produce int8 models; drop --mode or use --mode int8.")
        if train is None or train.labeled().y is None:
            raise DataError("--qat/--prune fine-tune the model and need labels: pass --dataset digits or "
                            "--rep-data FILE.npz with x and y.")

        labeled = train.labeled()
        optimized = qat_then_convert(keras_model, data=(labeled.x, labeled.y), epochs=epochs, qat=qat,
                                     prune_sparsity=prune_sparsity, representative_data=train.x,
                                     float_io=float_io, per_channel_dense=dense.per_channel,
                                     print_fn=lambda line: con.print(line))
        data = optimized.tflite
    elif mode == "int8" and dense.how == "measured":
        with con.status("Converting to int8 TFLite with Dense weights per channel and per tensor, measuring both…"):
            data, dense = _measured(keras_model, train.x, (evaluation.x, evaluation.y), runtime_target, dict(
                max_accuracy_drop=max_accuracy_drop, task=task, min_snr_db=min_snr_db, input_shape=shape,
                num_calibration_samples=num_calibration_samples, float_io=float_io))
    else:
        with con.status(f"Converting to {mode} TFLite…"):
            data = convert(keras_model, mode=mode, representative_data=train.x if train is not None else None,
                           num_calibration_samples=num_calibration_samples, float_io=float_io, input_shape=shape,
                           per_channel_dense=dense.per_channel)
    if ds is not None and source_shape != ds.input_shape:  # the model carries its adapter for later stages

        data = ConvertedModel.coerce(data).with_(source_shape=source_shape)
    if mode == "int8":
        _check_runtime(read_tflite(data), runtime_target, engine)  # before anything is written
    report = None
    if evaluation is not None:
        with con.status(f"Validating with LiteRT on {len(evaluation)} examples…"):
            # with --prune the reference is the pruned float model: the gate measures quantization loss only
            reference = optimized.pruning.model if optimized is not None and optimized.pruning else keras_model
            report = evaluate_conversion(reference, data, evaluation.x, evaluation.y, mode=mode,
                                         max_accuracy_drop=max_accuracy_drop, task=task, min_snr_db=min_snr_db)
    if labels is None and ds is not None and ds.class_names:
        labels = list(ds.class_names)
    extra = {"target": target, **(_dense_summary(data, dense) if mode == "int8" else {"dense_weights": None})}
    if ds is not None:
        extra["data"] = {"calibration": train.describe(), "evaluation": evaluation.describe()}
    if optimized is not None:
        extra["optimize"] = optimized.to_dict()
    result = write_export(outdir, data, name=name, labels=labels, source_model=model,
                          mode=mode + ("-float-io" if float_io else ""), report=report, extra=extra, **written)
    _finish(result, report, as_json)


class _Dense(NamedTuple):
    per_channel: bool
    reason: str
    how: str  # "runtime", "option", or "measured" (auto where the runtime computes both)


def _dense_option(choice: str, target: Optional[str], *, fine_tuned: bool) -> _Dense:
    """What --dense-quantization means for ``target``: refuses per-channel where the runtime computes it wrong.

    auto measures plain conversions (:func:`choose_dense_quantization`); a model fine-tuned by --qat/--prune
    follows the runtime rule.
    """
    rule = dense_quantization(target)
    if choice == "auto":
        if fine_tuned and rule.per_channel:
            return _Dense(True, rule.reason + " (--qat/--prune: not measured)", "runtime")
        return _Dense(rule.per_channel, rule.reason, "measured" if rule.per_channel else "runtime")
    if choice == "per-channel" and not rule.per_channel:
        raise invalid_value("dense_choice", f"per-tensor or auto for --target {target or 'any'} "
                            f"({rule.reason.split(': ', 1)[-1]})", choice)
    return _Dense(choice == "per-channel", f"{choice}: --dense-quantization {choice}", "option")


def _measured(keras_model, x, validation, target: Optional[str], options: dict) -> tuple[ConvertedModel, _Dense]:
    """Convert both ways and keep the cheaper within the gate (:func:`choose_dense_quantization`)."""
    data = choose_dense_quantization(keras_model, x, target=target, validation_data=validation, **options)
    choice = data.provenance["dense_quantization_choice"]
    return data, _Dense(choice["chosen"] == "per-channel", choice["reason"], "measured")


def _dense_summary(data, dense: _Dense) -> dict:
    """export.json's ``dense_weights`` (the reason) and ``dense_quantization`` (the choice, measurements)."""
    choice = ConvertedModel.coerce(data).provenance.get("dense_quantization_choice")
    if choice is None or choice.get("reason") != dense.reason:
        choice = {"chosen": "per-channel" if dense.per_channel else "per-tensor", "how": dense.how,
                  "reason": dense.reason, "measured": None}
    return {"dense_weights": dense.reason, "dense_quantization": choice}


def _check_runtime(fb, target: Optional[str], engine: str = "interpreter") -> None:
    """Refuse (UnsupportedOpError) a model the target's TFLM runtime lacks an op for or computes wrong, or with
    the compiled engine an op it has no emitter for (the error names --engine interpreter)."""
    if engine == "compiled":
        for op in dict.fromkeys(fb.op_names):
            engine_ops.get(op)
    if target is None or not fb.is_full_integer:
        return

    resolver_calls(fb, runtime=runtimes.for_target(target))


def _engine_runtime(engine: str, runtime_id: Optional[str], target: Optional[str],
                    mode: str) -> tuple[Optional[str], Optional[str]]:
    """(runtime, target): the runtime --runtime/--target name (None: export_files' default) and the target whose
    runtime rules apply (the compiled engine's runtime's where --target is any). Refuses a mismatch, and the
    compiled engine with a model that is not int8."""
    if engine == "compiled" and mode != "int8":
        raise invalid_value("--mode", "int8 with --engine compiled (it runs full-integer models; "
                            "or use --engine interpreter)", mode)
    if runtime_id is None:
        if target is not None or engine != "compiled":
            return (runtimes.for_target(target).id if target is not None else None), target
        runtime_id = "chirale-2.0.0"  # edgekd.engine.compile_model's default
    rt = runtimes.get(runtime_id)
    if target is not None and runtimes.for_target(target).id != rt.id:
        raise invalid_value("--runtime", f"{runtimes.for_target(target).id} for --target {target} (or --target any)",
                            runtime_id)
    return rt.id, target or (rt.targets[0] if engine == "compiled" else None)


def _finish(result, report, as_json: bool) -> None:

    if as_json:
        echo_json(result.summary)
        return
    s = result.summary
    t = Table(title="edgekd export", show_header=False)
    t.add_row("TFLite size", f"{s['tflite_bytes']:,} bytes")
    t.add_row("Mode", s["mode"])
    t.add_row("Input", f"{s['inputs'][0]['dtype']} {s['inputs'][0]['shape']}")
    t.add_row("Output", f"{s['outputs'][0]['dtype']} {s['outputs'][0]['shape']}")
    t.add_row("Ops", escape(", ".join(s["ops"])))  # custom op names come from the file: text, not markup
    if s.get("compiled"):
        c = s["compiled"]
        t.add_row("Engine", f"compiled ({c['runtime']}, {c['kernels']} kernels): activation buffer "
                  f"{c['activation_bytes']:,} B, weights and parameters {c['weights_bytes']:,} B")
    if s.get("dense_weights"):
        t.add_row("Dense weights", s["dense_weights"])
    if s.get("data"):
        t.add_row("Data", f"calibrated on {s['data']['calibration']}, evaluated on {s['data']['evaluation']}")
    if report is not None:
        if report.task == "regression":
            t.add_row("SNR vs float", f"{report.snr_db:.1f} dB (relative RMS error "
                      f"{100 * report.relative_rms_error:.2f}%) on {report.num_examples}")
            if report.max_error_steps is not None:
                t.add_row("Max error", f"{report.max_abs_error:.4g} ({report.max_error_steps:.1f} output steps)")
        else:
            t.add_row("Top-1 agreement", f"{100 * report.agreement:.2f}% of {report.num_examples}")
        if report.task != "regression" or report.max_error_steps is None:
            t.add_row("Max abs error", f"{report.max_abs_error:.4g}")
        if report.float_accuracy is not None:
            t.add_row("Accuracy float → " + s["mode"],
                      f"{100 * report.float_accuracy:.2f}% → {100 * report.tflite_accuracy:.2f}% "
                      f"({-report.accuracy_drop:+.2f} pp)")
    if s.get("tflm_unsupported_ops"):
        t.add_row("TFLM", "[red]cannot run: " + escape(", ".join(s["tflm_unsupported_ops"])) + "[/red]")
    console().print(t)
    click.echo(f"Wrote {len(result.files)} files to {result.outdir}:")
    for f in result.files:
        click.echo(f"  {os.path.basename(f)}")
