"""Find what in a stored model needs code to load, before any loader reads it.

Model files are untrusted input. Keras 3's safe mode refuses Python lambdas
in ``.keras`` files, but a model can need code in other ways: a legacy
``.h5`` Lambda (bytecode), a custom or registered class, a function that is
not a Keras built-in, a layer that runs a SavedModel or another framework's
module, or a SavedModel whose graph writes files or calls back into Python.
edgekd inspects the stored description itself — the ``.h5`` ``model_config``
attribute, the ``.keras`` archive's ``config.json``, the SavedModel's graph —
and loads the file only when nothing in it needs code, or when the user opted
in (``safe_mode=False``, ``--unsafe``).

The rules are allowlists: a Keras object must be a public Keras built-in class
(minus the ones that carry code), a function must be a Keras activation, loss
or metric, and a SavedModel op must be a registered TensorFlow op without side
effects outside the process (variables, calls and control flow are fine; file
I/O, Python callbacks, printing and unknown ops are not).
"""

from __future__ import annotations

import functools
import json
import os
import zipfile
from typing import Any, Optional

from edgekd.errors import ModelLoadError

# Keras layers whose config carries code or makes the loader run something.
CODE_LAYERS = {
    "Lambda": "Lambda layer",
    "TFOpLambda": "TFOpLambda layer (a TensorFlow function called by name)",
    "SlicingOpLambda": "SlicingOpLambda layer (a TensorFlow function called by name)",
    "TFSMLayer": "TFSMLayer (runs a SavedModel's functions)",
    "JaxLayer": "JaxLayer (a JAX function)",
    "FlaxLayer": "FlaxLayer (a Flax module)",
    "TorchModuleWrapper": "TorchModuleWrapper (a pickled PyTorch module)",
}
# Keras' serialization markers for plain data.
_DATA_MARKERS = {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__"}
# Abstract bases: never in a saved model unless a custom subclass hid behind them.
_BASES = {"Layer", "Wrapper", "InputSpec", "Loss", "Metric", "Optimizer", "Initializer", "Regularizer",
          "Constraint", "LearningRateSchedule", "KerasSaveable"}
# Layers that read a file named in their config.
_FILE_READERS = {"TextVectorization", "StringLookup", "IntegerLookup"}

# SavedModel ops refused whatever the op registry says (file I/O, Python callbacks, output streams).
_NEVER_OPS = {
    "PyFunc", "PyFuncStateless", "EagerPyFunc", "ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst",
    "DeleteFile", "LoadAndRemapMatrix", "DecodeProtoV2", "EncodeProto", "Print", "PrintV2", "Save", "SaveV2",
    "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
}
# Stateful ops that only touch the process's own state (variables, calls, control flow, assertions, RNG).
_STATEFUL_OK = {
    "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
    "VarIsInitializedOp", "DestroyResourceOp", "DisableCopyOnRead", "ResourceGather", "VariableV2", "Variable",
    "Assign", "StatefulPartitionedCall", "If", "While", "Case", "Assert", "RandomUniform",
    "RandomStandardNormal", "TruncatedNormal", "RandomUniformInt",
}
# The variable save/restore functions every SavedModel carries (reached only from the saver's nodes).
_SAVER_OPS = {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "Save", "SaveSlices", "Restore", "RestoreSlice"}


@functools.lru_cache(maxsize=None)
def _keras_builtins() -> tuple[frozenset, frozenset]:
    """(class names, function names) of Keras' public built-ins."""
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    class_mods = (keras.layers, keras.initializers, keras.regularizers, keras.constraints, keras.optimizers,
                  keras.optimizers.schedules, keras.losses, keras.metrics, keras.dtype_policies)
    classes = {n for m in class_mods for n, o in vars(m).items() if isinstance(o, type) and not n.startswith("_")}
    classes |= {"Functional", "Model", "Sequential", "DTypePolicy"}
    classes -= set(CODE_LAYERS) | _BASES
    fn_mods = (keras.activations, keras.losses, keras.metrics)
    functions = {n for m in fn_mods for n, o in vars(m).items()
                 if callable(o) and not isinstance(o, type) and not n.startswith("_")}
    functions -= {"get", "serialize", "deserialize"}
    return frozenset(classes), frozenset(functions)


def _object_problem(obj: dict, class_name: str, where: str) -> Optional[str]:
    """Why one serialized Keras object needs code, or None."""
    if class_name in _DATA_MARKERS:
        return None
    if class_name in CODE_LAYERS:
        return f"{CODE_LAYERS[class_name]} {where!r}"
    if class_name == "__lambda__":
        return f"a Python lambda in {where!r}"
    module = obj.get("module")
    registered = obj.get("registered_name")
    if class_name == "function":
        fn = obj.get("config")
        if module not in (None, "builtins") and not str(module).startswith("keras"):
            return f"the function {fn!r} from module {module!r} in {where!r}"
        if not isinstance(fn, str) or fn not in _keras_builtins()[1]:
            return f"the function {fn!r} in {where!r} (not a Keras built-in)"
        return None
    if module is not None and not (module == "keras" or str(module).startswith("keras.")):
        return f"the class {class_name!r} from module {module!r}"
    if registered is not None and registered != class_name:
        return f"the registered custom class {registered!r}"
    if class_name not in _keras_builtins()[0]:
        return f"the class {class_name!r} ({where!r}), which is not a Keras built-in"
    inner = obj.get("config")
    if class_name in _FILE_READERS and isinstance(inner, dict) and isinstance(inner.get("vocabulary"), str):
        return f"the {class_name} layer {where!r}, which reads the file {inner['vocabulary']!r}"
    return None


def config_problems(config: Any) -> list[str]:
    """Everything in a Keras model config (``.keras`` config.json or ``.h5`` model_config) that needs code.

    The top-level ``compile_config`` is skipped: edgekd loads with ``compile=False``.
    """
    problems: list[str] = []

    def visit(obj: Any, where: str, top: bool = False) -> None:
        if isinstance(obj, list):
            for v in obj:
                visit(v, where)
            return
        if not isinstance(obj, dict):
            return
        class_name = obj.get("class_name")
        if isinstance(class_name, str):
            inner = obj.get("config")
            name = inner.get("name") if isinstance(inner, dict) else None
            where = name if isinstance(name, str) else where
            problem = _object_problem(obj, class_name, where)
            if problem is not None:
                problems.append(problem)
                return
        for key, value in obj.items():
            if not (top and key == "compile_config"):
                visit(value, where)

    visit(config, "model", top=True)
    return problems


def _stored_config(path: str, ext: str) -> Any:
    """The model config a ``.keras``/``.h5`` file stores, parsed (no Keras involved)."""
    if ext == ".keras":
        try:
            with zipfile.ZipFile(path) as z:
                text = z.read("config.json")
        except KeyError:
            raise ModelLoadError(f"{path} has no config.json (not a Keras model archive). "
                                 "Save the whole model with model.save().") from None
        except (zipfile.BadZipFile, OSError):
            raise ModelLoadError(f"{path} is not a valid .keras archive (corrupt or truncated). "
                                 "Re-save the model.") from None
    else:
        import h5py  # h5py: only for legacy .h5 files

        try:
            with h5py.File(path, "r") as f:
                text = f.attrs.get("model_config")
        except OSError:
            raise ModelLoadError(f"{path} is not a valid HDF5 file (corrupt or truncated). "
                                 "Re-save the model.") from None
        if text is None:
            raise ModelLoadError(f"{path} holds no model (weights only?). Save the whole model with model.save().")
    try:
        return json.loads(text.decode("utf-8") if isinstance(text, bytes) else str(text))
    except (ValueError, UnicodeDecodeError):
        raise ModelLoadError(f"{path} has an unreadable model config (corrupt). Re-save the model.") from None


def _op_problem(op: str, saver: bool) -> Optional[str]:
    from tensorflow.python.framework import op_def_registry  # TensorFlow

    if saver and op in _SAVER_OPS:
        return None
    if op in _NEVER_OPS:
        return f"the TensorFlow op {op}"
    op_def = op_def_registry.get(op)
    if op_def is None:
        return f"the unknown TensorFlow op {op}"
    if op_def.is_stateful and op not in _STATEFUL_OK:
        return f"the TensorFlow op {op} (side effects)"
    return None


def savedmodel_problems(path: str) -> list[str]:
    """Everything in a SavedModel's graph that reaches outside the process (or is unknown).

    Checked: every graph node and every function the loader or a call can
    run (the object graph's concrete functions and whatever they call). The
    variable save/restore functions, reached only from the saver's nodes, may
    also use the checkpoint ops.
    """
    from tensorflow.core.protobuf import saved_model_pb2  # TensorFlow

    sm = saved_model_pb2.SavedModel()
    try:
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
    except Exception:
        raise ModelLoadError(f"{path}/saved_model.pb is not a valid SavedModel (corrupt or truncated). "
                             "Re-export the model.") from None
    problems: list[str] = []
    for mg in sm.meta_graphs:
        functions = {f.signature.name: f for f in mg.graph_def.library.function}
        nodes = {n.name: n for n in mg.graph_def.node}

        def called(node_defs: Any) -> set[str]:
            out = set()
            for n in node_defs:
                for attr in n.attr.values():
                    if attr.func.name:
                        out.add(attr.func.name)
                    out.update(fn.name for fn in attr.list.func)
            return out

        # the saver's nodes and everything they read
        saver = set()
        todo = [t.split(":")[0].lstrip("^") for t in (mg.saver_def.save_tensor_name, mg.saver_def.restore_op_name)
                if t]
        while todo:
            name = todo.pop()
            if name in saver or name not in nodes:
                continue
            saver.add(name)
            todo.extend(i.split(":")[0].lstrip("^") for i in nodes[name].input)

        def closure(roots: set[str]) -> set[str]:
            seen: set[str] = set()
            todo = list(roots)
            while todo:
                fn = todo.pop()
                if fn in seen:
                    continue
                seen.add(fn)
                if fn not in functions:
                    problems.append(f"a call of the missing function {fn}")
                    continue
                todo.extend(called(functions[fn].node_def))
            return seen

        strict_nodes = [n for name, n in nodes.items() if name not in saver]
        strict_fns = closure(set(mg.object_graph_def.concrete_functions) | called(strict_nodes))
        saver_fns = closure(called(nodes[n] for n in saver)) - strict_fns
        checks = [(n.op, False) for n in strict_nodes] + [(nodes[n].op, True) for n in saver]
        checks += [(n.op, False) for fn in strict_fns if fn in functions for n in functions[fn].node_def]
        checks += [(n.op, True) for fn in saver_fns if fn in functions for n in functions[fn].node_def]
        for op, in_saver in checks:
            problem = _op_problem(op, in_saver)
            if problem is not None and problem not in problems:
                problems.append(problem)
    return problems


def needs_code(path: str) -> Optional[str]:
    """Why the model stored at ``path`` needs code to load, or None when it does not.

    Args:
        path: A ``.keras``/``.h5``/``.hdf5`` file or a SavedModel directory.

    Raises:
        ModelLoadError: The file is not a readable model.
    """
    if os.path.isdir(path):
        problems = savedmodel_problems(path)
    else:
        ext = os.path.splitext(path)[1].lower()
        problems = config_problems(_stored_config(path, ".keras" if ext == ".keras" else ".h5"))
    if not problems:
        return None
    more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
    return problems[0] + more
