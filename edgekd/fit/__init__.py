"""``edgekd.fit``: the most accurate distilled student that fits a board.

The search joins the pipeline: for each candidate (student family × width ×
resolution × depth × temperature) it

1. builds the student and **profiles it before any training** — params, MACs,
   int8 flash, peak RAM and the board's latency estimate
   (:func:`edgekd.check.budgets.estimate`); a candidate that cannot meet the
   budgets is recorded as ``infeasible`` and never trained, and a candidate
   identical to one already trained (same network, input and temperature)
   reuses its result;
2. distils it from the teacher (teacher logits cached), with Optuna's pruner
   stopping trials whose validation accuracy lags;
3. converts it to full int8, measures it with the real TFLM arena and the
   board's latency model (:func:`edgekd.check.check`), and scores it by int8
   validation accuracy.

Optuna drives the search (TPE with budget constraints by default, NSGA-II for
an accuracy/latency Pareto front), so a study can live in shared storage and
be resumed, or be run by many workers at once. Computation returns a
:class:`FitResult`; :func:`write_report` writes ``trials.csv``/``trials.json``,
``pareto.png`` and the chosen model's export.

Modules: :mod:`~edgekd.fit.search` (space, study, driver),
:mod:`~edgekd.fit.measurement` (one candidate), :mod:`~edgekd.fit.report`
(table, files, plot), :mod:`~edgekd.fit.records` (:class:`Trial`, :class:`FitResult`).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, Callable, Optional

import numpy as np

from edgekd import boards as _boards
from edgekd.check.budgets import Budgets, estimate, resolve_budgets
from edgekd.check.compiled import check_engine
from edgekd.convert import load_model
from edgekd.convert.runtime import predict
from edgekd.errors import InvalidArgumentError, invalid_value
from edgekd.model import ConvertedModel
from edgekd.profile import profile
from edgekd.distill.recipes import get_recipe

from .measurement import (Setup, build_student, check_data, check_teacher_data, compare, load_student, resize,
                          student_key)
from .records import FitResult, Trial, load_trial_tflite, trial_path
from .report import REPORT_FILES, binding_budget, comparison_table, pareto_figure, pareto_png, write_report
from .search import (ARCHS, Objective, SearchSpace, archs, check_storage, default_study_name, open_study,
                     records, run)
from .shared import connect, download

__all__ = ["ARCHS", "Budgets", "FitResult", "REPORT_FILES", "SearchSpace", "Trial", "binding_budget",
           "build_student", "check_storage", "check_teacher_data", "comparison_table", "default_study_name",
           "estimate", "fit",
           "pareto_figure", "pareto_png", "student_key", "write_report"]


def fit(
    teacher: Any,
    *,
    train: tuple[Any, Any],
    val: tuple[Any, Any],
    board: str | Any,
    test: Optional[tuple[Any, Any]] = None,
    max_flash: Any = None,
    max_ram: Any = None,
    max_latency_ms: Optional[float] = None,
    arch: str = "ds_cnn",
    trials: int = 12,
    epochs: int = 10,
    batch_size: int = 64,
    alpha: float = 0.1,
    space: SearchSpace = SearchSpace(),
    objective: str = "accuracy",
    storage: Optional[str] = None,
    study_name: Optional[str] = None,
    artifacts_dir: Optional[str] = None,
    prune: bool = True,
    seed: int = 0,
    verbose: int = 0,
    on_trial: Optional[Callable[[Trial], None]] = None,
    max_failures: int = 3,
    safe_mode: bool = True,
    recipe: Optional[str] = None,
    engine: str = "interpreter",
    artifact_store: Optional[str] = None,
    heartbeat: Optional[int] = 30,
    report_only: bool = False,
) -> FitResult:
    """Search the most accurate distilled student that fits ``board``'s budgets.

    Args:
        teacher: A Keras model (logits or softmax output) or a model path.
        train: ``(x, y)`` transfer set (labels used with weight ``alpha``).
        val: ``(x, y)`` validation split: candidates are ranked by int8 accuracy on it.
        board: Board id or :class:`edgekd.boards.Board`.
        test: Optional ``(x, y)`` held-out split, reported for the chosen student.
        max_flash, max_ram, max_latency_ms: Budgets overriding the board's
            (bytes or ``"256KB"``; milliseconds of the board estimate), checked
            as :func:`edgekd.check.check` checks them.
        arch: Student family: ``dense``, ``ds_cnn``, ``mobilenet_v1``, ``small_cnn``, one added with
            :func:`edgekd.students.register`, or
            ``shrink`` (derived from the teacher).
        trials: How many candidates to *train* in the study (a resumed
            study trains only the missing ones). Candidates rejected by their
            profile, and repeats of a candidate already trained, are not
            counted; at most ``max(5 * trials, 10)`` are proposed per call,
            and the search stops early once every point of ``space`` has been seen.
        epochs: Distillation epochs per trained candidate.
        batch_size: Batch size.
        alpha: Weight of the hard-label loss.
        space: The values searched.
        objective: ``"accuracy"`` (TPE, budgets as constraints) or ``"pareto"``
            (NSGA-II over int8 accuracy and board latency, budgets as constraints).
        storage: Optuna storage URL (``sqlite:///study.db``, or a shared
            PostgreSQL/MySQL URL so many workers search together: the same call on
            many machines divides the work, docs/fit.md). ``None`` keeps the study
            in memory (no resume). The database is opened before the teacher is loaded.
        study_name: Study name within the storage (default: derived from the board, the
            family, the objective and the budgets; a study of an older edgekd named
            ``edgekd-fit`` is resumed).
        artifacts_dir: A local folder where the trials this call trains also keep their
            ``.tflite`` and ``.keras`` (``trial_NNNN.*``; older studies' chosen models are read back from it).
        prune: Let Optuna's median pruner stop lagging trials early.
        seed: Sampler and training seed.
        verbose: Keras verbosity inside each trial.
        on_trial: Called with each finished :class:`Trial` (progress bars).
        max_failures: Stop after this many trials fail with an error.
        recipe: ``None`` or ``"patient"``: each candidate is distilled with :func:`edgekd.distill.distill`'s
            recipe (warm-up, cosine decay, the teacher and student fed the same augmented view; ``epochs``
            still sets the length).
        safe_mode: When ``teacher`` is a path: refuse a file that needs code
            to load (see :func:`edgekd.convert.load_model`).
        engine: ``"interpreter"`` or ``"compiled"``: candidates are measured for that engine
            (:func:`edgekd.check.check`'s ``engine``: with ``"compiled"``, the linked engine's flash and
            static RAM instead of TFLM's runtime and arena), so a student that fits only compiled is found.
        artifact_store: A folder shared by every worker (Optuna's ``FileSystemArtifactStore``) for each
            trained candidate's ``.tflite`` and ``.keras``; default: the study's own database.
        heartbeat: Seconds between a running trial's heartbeats (stored studies); a trial silent for
            twice as long (its worker was killed) is marked failed and its candidate queued again.
        report_only: Train nothing: read the stored study (``storage``, ``study_name``) and return
            the result of the whole search, as any of its workers would.

    Returns:
        A :class:`FitResult`; ``best`` is None when no candidate passed every budget.
    """
    brd, budgets, splits = _validate(board, arch, objective, trials, epochs, batch_size, alpha, max_flash, max_ram,
                                     max_latency_ms, train, val, test)
    (x_tr, y_tr), (x_val, y_val), test = splits
    check_engine(engine)
    get_recipe(recipe)  # an unknown recipe fails before anything loads
    if storage is not None:
        check_storage(storage)
        connect(storage)
    elif report_only:
        raise invalid_value("storage", "the storage URL of a search to report (report_only=True)", storage)
    teacher = load_model(teacher, safe_mode=safe_mode)
    check_teacher_data(teacher, x_tr, y_tr, x_val, y_val, test)
    setup = Setup(teacher, arch, brd, budgets, (x_tr, y_tr), (x_val, y_val), epochs, batch_size, alpha, seed,
                  verbose, artifacts_dir, engine)
    setup = dataclasses.replace(setup, recipe=recipe)  # candidates trained with the recipe (distill's)
    if arch == "shrink":  # a teacher shrink cannot transform fails here, not in the first trial of a new study
        build_student(arch, teacher, setup.input_shape, setup.num_classes, min(space.width), min(space.resolution),
                      min(space.depth))
    teacher_acc = float(np.mean(np.asarray(teacher.predict(x_val, verbose=0)).argmax(-1) == y_val))
    opened = open_study(setup, objective=objective, trials=trials, storage=storage, study_name=study_name,
                        prune=prune, heartbeat=heartbeat, artifact_store=artifact_store, report_only=report_only,
                        on_stale=_stale(on_trial), space=space)
    search = Objective(setup, space, objective, max_failures=max_failures, on_trial=on_trial, opened=opened,
                       trials=trials)
    interrupted = False if report_only else run(opened.study, search, trials=trials)
    found = records(opened.study)
    passed = [t for t in found if t.state == "passed" and t.repeat_of is None]
    best = max(passed, key=lambda t: (t.int8_accuracy or 0.0, -t.flash_bytes, -t.number)) if passed else None
    best_model, best_tflite, best_keras = _chosen(best, search.models, opened, artifacts_dir, setup.input_shape)
    test_acc = comparison = None
    if best_tflite is not None and test is not None:
        test_acc = _test_accuracy(teacher, best, best_model, best_tflite, test)
        comparison = compare(teacher, best, brd, x_tr, test, test_acc)
    return FitResult(brd, budgets, arch, tuple(found), best, best_tflite, best_model, teacher_acc, profile(teacher),
                     search.trainings, interrupted, test_acc, comparison, best_keras, opened.study.study_name)


def _validate(board: Any, arch: str, objective: str, trials: Any, epochs: Any, batch_size: Any, alpha: Any,
              max_flash: Any, max_ram: Any, max_latency_ms: Any, train: Any, val: Any, test: Any) -> tuple:
    """(board, budgets, (train, val, test)) once every argument is checked; nothing is loaded or trained."""
    valid = archs()  # the registry's now: an architecture added there is searchable
    if arch not in valid:
        raise invalid_value("arch", f"one of {', '.join(valid)}", arch)
    if objective not in ("accuracy", "pareto"):
        raise invalid_value("objective", "'accuracy' or 'pareto'", objective)
    for name, v in (("trials", trials), ("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise invalid_value(name, "a positive integer", v)
    if not 0.0 <= alpha <= 1.0:
        raise invalid_value("alpha", "a float in [0, 1]", alpha)
    brd = _boards.get(board) if not isinstance(board, _boards.Board) else board
    if not getattr(brd, "tflm_supported", True):
        raise InvalidArgumentError(
            f"Board {brd.id} cannot run TFLite Micro: {brd.tflm_unsupported_reason or 'unsupported'}. "
            "Pick another `board` (`edgekd boards` lists them).")
    budgets = resolve_budgets(brd, max_flash=max_flash, max_ram=max_ram, max_latency_ms=max_latency_ms)
    splits = (check_data(*train, "train"), check_data(*val, "val"),
              check_data(*test, "test") if test is not None else None)
    return brd, budgets, splits


def _stale(on_trial: Optional[Callable[[Trial], None]]) -> Callable[[Any], None]:
    """Reports a trial whose worker stopped beating (Optuna failed it) as a ``failed`` trial through ``on_trial``."""
    def report(frozen: Any) -> None:
        d = frozen.user_attrs.get("trial")
        if on_trial is not None and d is not None and d.get("number") == frozen.number:
            on_trial(Trial.from_dict({**d, "state": "failed",
                                      "note": "its worker stopped while training it (no heartbeat); queued again"}))
    return report


def _chosen(best: Optional[Trial], models: dict[int, tuple[Any, Any]], opened: Any, artifacts_dir: Optional[str],
            source_shape: tuple[int, ...]) -> tuple[Any, Any, Optional[bytes]]:
    """(Keras student, measured int8 model, the student's stored .keras bytes) of the chosen trial.

    From the study's artifact store when it has them (so every worker, and a later report, writes the same
    bytes); else trained in this call (an in-memory study); else kept in ``artifacts_dir`` by an older run.
    """
    if best is None:
        return None, None, None
    frozen = opened.study.get_trials(deepcopy=False)[best.number] if opened.store is not None else None
    tflite = keras_bytes = None
    if frozen is not None:
        tflite = download(opened.store, frozen, f"trial_{best.number:04d}.tflite", opened.storage)
        keras_bytes = download(opened.store, frozen, f"trial_{best.number:04d}.keras", opened.storage)
    if tflite is None and best.number in models:
        return (*models[best.number], None)
    if tflite is None:
        tflite = load_trial_tflite(artifacts_dir, best.number)
    if tflite is not None:  # with the arena measured when the trial ran: nothing is bisected again
        tflite = ConvertedModel(tflite, name="model", source_shape=source_shape, arena_bytes=best.arena_bytes)
    if keras_bytes is not None:
        return _student_from_bytes(keras_bytes), tflite, keras_bytes
    keras_path = trial_path(artifacts_dir, best.number, "keras") if artifacts_dir else None
    return load_student(keras_path), tflite, None


def _student_from_bytes(data: bytes) -> Any:
    with tempfile.TemporaryDirectory(prefix="edgekd-student-") as d:
        path = os.path.join(d, "student.keras")
        with open(path, "wb") as f:
            f.write(data)
        return load_student(path)


def _test_accuracy(teacher: Any, best: Trial, student: Any, tflite: Any,
                   test: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Test accuracy of the int8 student, the teacher and (when its Keras model is known) the float student."""
    x, y = test
    xs = resize(x, best.input_shape)
    acc = {"int8": float(np.mean(predict(bytes(tflite), xs).argmax(-1) == y)),
           "teacher": float(np.mean(np.asarray(teacher.predict(x, verbose=0)).argmax(-1) == y))}
    if student is not None:
        acc["float"] = float(np.mean(np.asarray(student.predict(xs, verbose=0)).argmax(-1) == y))
    return acc


from edgekd._callable import make_callable  # noqa: E402

make_callable(__name__, fit)
