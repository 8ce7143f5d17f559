"""``edgekd profile`` and ``edgekd shrink``: what a model costs, and a smaller student."""

from __future__ import annotations

import os
from typing import Optional
import json

import click
import numpy as np

from edgekd.cli._common import check_keras_path, load_keras, parse_shape, unsafe_option
from edgekd.errors import InvalidArgumentError, ModelLoadError
from edgekd.profile import profile as compute
from edgekd.students import shrink as do_shrink
from edgekd._io import atomic_save, writable_parent
from edgekd.convert import convert, model_input_shape
from edgekd.profile import print_comparison, print_profile
from edgekd.students.builders import check_multipliers

_KERAS_EXT = (".keras", ".h5", ".hdf5")


def _echo_table(text: str) -> None:
    click.echo(text)


@click.command("profile")
@click.argument("model", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the per-layer rows as CSV.")
@click.option("--int8", "int8", is_flag=True,
              help="Keras models: convert to full-int8 TFLite first and profile the real int8 op graph "
                   "(calibrated on random inputs: the graph and sizes, not the accuracy, are what count here).")
@click.option("--input-shape", type=str, default=None, help="H,W,C when the model's input shape is unknown.")
@unsafe_option
def profile(model: str, as_json: bool, as_csv: bool, int8: bool, input_shape: Optional[str], unsafe: bool) -> None:
    """Params, MACs, weight/activation bytes per layer; flash and peak RAM of MODEL.

    MODEL is a .keras, .h5 or .tflite file or a SavedModel directory. Totals:
    params, MACs (split into conv / depthwise / fully_connected / other), int8
    flash estimate, and peak activation RAM from tensor lifetimes (int8 and
    float32). A SavedModel has no Keras layers to walk: its int8 TFLite
    graph is profiled, as with --int8.
    """
    if as_json and as_csv:
        raise InvalidArgumentError("Pass either --json or --csv, not both.")
    shape = parse_shape(input_shape)
    ext = os.path.splitext(model)[1].lower()
    savedmodel = os.path.isdir(model)
    if savedmodel:
        check_keras_path(model)
    elif ext not in _KERAS_EXT + (".tflite",):
        raise InvalidArgumentError(
            f"{model} has extension {ext or '(none)'}; expected a .keras, .h5 or .tflite model file or a "
            "SavedModel directory."
        )
    elif not os.path.isfile(model):
        raise ModelLoadError(f"Model file not found: {model}. Pass the path of an existing model file.")

    if ext == ".tflite" and not savedmodel:
        result = compute(model)
    else:
        keras_model = load_keras(model, unsafe=unsafe, input_shape=shape)
        if int8 or savedmodel:  # a SavedModel is one opaque layer in Keras: profile its int8 graph

            in_shape = model_input_shape(keras_model, input_shape=shape)
            rep = np.random.default_rng(0).uniform(0, 1, (16, *in_shape)).astype("float32")
            result = compute(convert(keras_model, mode="int8", representative_data=rep, input_shape=shape))
            result = type(result)(**{**result.__dict__, "name": os.path.basename(os.path.normpath(model)) + " (int8)"})
        else:
            result = compute(keras_model, input_shape=shape)
    if as_json:
        click.echo(result.to_json())
    elif as_csv:
        click.echo(result.to_csv(), nl=False)
    else:
        print_profile(result, int8=True if int8 or savedmodel else None, print_fn=_echo_table, width=160)


@click.command("shrink")
@click.argument("teacher", type=str)
@click.option("--width", type=float, default=0.5, show_default=True, help="Width multiplier α (channels × α).")
@click.option("--resolution", type=float, default=1.0, show_default=True,
              help="Resolution multiplier ρ (input side × ρ; > 1 needs --upsample).")
@click.option("--separable/--no-separable", default=True, show_default=True,
              help="Replace full convs by depthwise-separable blocks.")
@click.option("--depth", type=int, default=None, help="Keep at most N copies of each repeated block.")
@click.option("--upsample", is_flag=True, help="Allow --resolution > 1 (a larger input than the teacher's).")
@click.option("--input-shape", type=str, default=None, help="H,W,C when the teacher's input shape is unknown.")
@click.option("--json", "as_json", is_flag=True, help="Print both profiles as JSON instead of the table.")
@unsafe_option
@click.option("-o", "--output", required=True, type=str, help="Where to write the student (.keras).")
def shrink(teacher: str, width: float, resolution: float, separable: bool, depth: Optional[int],
           upsample: bool, input_shape: Optional[str], as_json: bool, unsafe: bool, output: str) -> None:
    """Derive an untrained student from TEACHER (.keras/.h5) and write it to OUTPUT.

    Prints the teacher's and the student's profiles side by side. Train the
    student with `edgekd distill`.
    """
    if not output.lower().endswith(".keras"):
        raise InvalidArgumentError(f"Output {output} must end with .keras (the student is saved as a Keras model).")
    shape = parse_shape(input_shape)
    ext = os.path.splitext(teacher)[1].lower()
    if os.path.isdir(teacher):
        raise InvalidArgumentError(
            f"{teacher} is a directory; shrink needs the Keras teacher's layers (.keras or .h5 file), which a "
            "SavedModel does not keep. Pass the .keras/.h5 file."
        )
    if ext not in _KERAS_EXT:
        raise InvalidArgumentError(
            f"{teacher} has extension {ext or '(none)'}; shrink needs the Keras teacher (.keras or .h5)."
        )

    writable_parent(output)

    # validate the options before loading anything

    check_multipliers(width, resolution, upsample)
    if depth is not None and depth < 1:
        raise InvalidArgumentError(f"Invalid value for --depth: {depth}. Expected an int >= 1.")
    check_keras_path(teacher, what="Teacher")
    model = load_keras(teacher, unsafe=unsafe, input_shape=shape)
    student = do_shrink(model, width=width, resolution=resolution, separable=separable, depth=depth,
                        upsample=upsample)

    p_teacher, p_student = compute(model, input_shape=shape), compute(student)
    atomic_save(output, student.save)
    if as_json:
        click.echo(json.dumps({"teacher": p_teacher.to_dict(), "student": p_student.to_dict(),
                               "output": output}, indent=2))
    else:
        print_comparison(p_teacher, p_student, print_fn=_echo_table)
        click.echo(f"Wrote {output} (untrained; input {tuple(student.input_shape[1:])}). "
                   f"Train it with: edgekd distill --student {output} ...")
