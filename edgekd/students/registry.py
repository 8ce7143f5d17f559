"""Registry of student architectures: ``get("ds_cnn:width=0.5,resolution=0.75")``.

Every list of architectures (``edgekd fit --arch``, ``edgekd distill --student-arch``, :func:`edgekd.fit`)
comes from here: an architecture added with :func:`register` is usable everywhere.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping, Union

from edgekd.errors import InvalidArgumentError, invalid_value, unknown_name
from edgekd.students import builders
from edgekd.students.dense import DEPTH_RANGE as _DENSE_DEPTH, dense

BUILDERS: dict[str, Callable[..., Any]] = {
    "dense": dense,
    "ds_cnn": builders.ds_cnn,
    "mobilenet_v1": builders.mobilenet_v1,
    "small_cnn": builders.small_cnn,
}
_DEPTH = {"dense": _DENSE_DEPTH, "ds_cnn": (0, 32), "mobilenet_v1": (0, 5), "small_cnn": (1, 8)}
_BUILT_IN = frozenset(BUILDERS)
_RESERVED = ("input_shape", "num_classes")
# the knobs edgekd.fit searches: a builder takes them keyword-only, next to input_shape and num_classes
_KNOBS = ("width", "resolution", "depth")


def register(name: str, builder: Callable[..., Any], *, depth: tuple[int, int] = (0, 32)) -> Callable[..., Any]:
    """Add a student architecture; the CLI's choices and :func:`edgekd.fit` see it at once.

    Args:
        name: The architecture's name (an identifier, not yet registered).
        builder: ``builder(*, input_shape, num_classes, width, resolution, depth, ...) -> keras.Model``
            returning logits; its other keyword-only parameters become ``name:key=value`` options.
        depth: The valid range of ``depth``.

    Returns:
        ``builder``.

    Raises:
        InvalidArgumentError: A bad or taken name, or a builder without the keyword-only parameters.
    """
    if not isinstance(name, str) or not name.isidentifier() or name == "shrink":
        raise invalid_value("name", "an identifier other than 'shrink'", name)
    if name in BUILDERS:
        raise InvalidArgumentError(f"Student {name!r} is already registered. Pick another name.")
    params = inspect.signature(builder).parameters if callable(builder) else {}
    missing = [k for k in (*_RESERVED, *_KNOBS)
               if k not in params or params[k].kind != inspect.Parameter.KEYWORD_ONLY]
    if missing:
        raise invalid_value("builder", "a callable taking keyword-only input_shape, num_classes, width, resolution "
                            f"and depth (missing: {', '.join(missing)})", getattr(builder, "__name__", builder))
    BUILDERS[name] = builder
    _DEPTH[name] = (int(depth[0]), int(depth[1]))
    return builder


def _options(name: str) -> list[str]:
    sig = inspect.signature(BUILDERS[name])
    return [p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY]


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(low)
        except ValueError:
            pass
    return text.strip()


def parse_arch(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:key=value,key=value"`` into ``(name, kwargs)``.

    Values are parsed as int, float, bool (``true``/``false``), ``none`` or
    left as strings. Only the name and the syntax are checked here; use
    :func:`get` to also check the keys and values.

    Raises:
        InvalidArgumentError: Empty spec, a part that is not ``key=value``,
            or a repeated key.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise invalid_value("spec", "a student spec like 'ds_cnn:width=0.5,resolution=0.75'", spec)
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    kwargs: dict[str, Any] = {}
    if rest.strip():
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or not key or not key.isidentifier() or not value.strip():
                raise invalid_value(
                    "spec", f"'name:key=value,...' (e.g. 'ds_cnn:width=0.5'); the part {part.strip()!r} is "
                    "not key=value", spec,
                )
            if key in kwargs:
                raise invalid_value("spec", f"each option once; {key!r} is repeated", spec)
            kwargs[key] = _parse_value(value)
    return name, kwargs


def _validate(name: str, kwargs: Mapping[str, Any], source: Any) -> None:
    valid = _options(name)
    for key in kwargs:
        if key in _RESERVED:
            raise InvalidArgumentError(
                f"Option {key!r} of student {name!r} is given when the student is built: "
                f"call get({source!r})({key}=...). Options: {', '.join(valid)}"
            )
        if key not in valid:
            raise InvalidArgumentError(
                f"Unknown option {key!r} for student {name!r}. Valid options: {', '.join(valid)}"
            )
    defaults = {p.name: p.default for p in inspect.signature(BUILDERS[name]).parameters.values()}
    merged = {**defaults, **kwargs}
    builders.check_multipliers(merged["width"], merged["resolution"], merged.get("upsample", False))
    builders.check_depth(merged["depth"], *_DEPTH[name])


def get(identifier: Union[str, Mapping[str, Any], Callable[..., Any]], **options: Any) -> Any:
    """Look up a student builder, with options bound.

    Args:
        identifier: A name (``"ds_cnn"``), a spec with options
            (``"ds_cnn:width=0.5,resolution=0.75"``), a dict
            (``{"name": "ds_cnn", "width": 0.5}``; ``"class_name"``/``"config"``
            also accepted), or a callable (returned unchanged).
        **options: More builder options, overriding the spec's. When they
            include both ``input_shape`` and ``num_classes`` the model is
            built and returned (``get("ds_cnn", input_shape=s, num_classes=n)``
            is ``get("ds_cnn")(input_shape=s, num_classes=n)``).

    Returns:
        A callable ``builder(input_shape=..., num_classes=...) -> keras.Model``
        (a ``functools.partial`` of the builder with the options bound), or
        the built model when ``input_shape`` and ``num_classes`` were given.

    Raises:
        InvalidArgumentError: Unknown name (the message lists the valid
            ones), unknown option, or an invalid option value.
    """
    if callable(identifier) and not isinstance(identifier, (str, Mapping)):
        return identifier(**options) if options else identifier
    if isinstance(identifier, Mapping):
        d = dict(identifier)
        if "class_name" in d:
            name, kwargs = d.pop("class_name"), dict(d.pop("config", {}) or {})
        else:
            name = d.pop("name", None)
            kwargs = d
        if not isinstance(name, str):
            raise invalid_value(
                "identifier", "a dict with a 'name' key, e.g. {'name': 'ds_cnn', 'width': 0.5}", identifier
            )
        name = name.strip()
    elif isinstance(identifier, str):
        name, kwargs = parse_arch(identifier)
    else:
        raise invalid_value("identifier", "a student name, 'name:key=value,...' spec, dict or callable",
                            identifier)
    if name not in BUILDERS:
        raise unknown_name("student", name, BUILDERS)
    _validate(name, kwargs, identifier)
    io_args = {k: options.pop(k) for k in _RESERVED if k in options}
    _validate(name, {**kwargs, **options}, identifier)
    kwargs = {**kwargs, **options}
    if len(io_args) == len(_RESERVED):
        return BUILDERS[name](**kwargs, **io_args)
    return functools.partial(BUILDERS[name], **kwargs, **io_args)


def unregister(name: str) -> None:
    """Remove an architecture added with :func:`register` (the built-in ones stay).

    Raises:
        InvalidArgumentError: ``name`` is built in or not registered.
    """
    if name in _BUILT_IN or name not in BUILDERS:
        added = ", ".join(sorted(set(BUILDERS) - _BUILT_IN)) or "none so far"
        raise invalid_value("name", f"an architecture added with register ({added})", name)
    del BUILDERS[name]
    _DEPTH.pop(name, None)


def names() -> list[str]:
    """The registered student names."""
    return sorted(BUILDERS)
