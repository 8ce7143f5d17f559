"""Shared pieces of the distillation benchmarks: models, data subsets, confidence intervals."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def ci95(values, *, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean (95% unless ``level`` says)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)


def fmt(values, *, pct: bool = True, digits: int = 1) -> str:
    m, h = ci95(values)
    scale = 100.0 if pct else 1.0
    unit = "%" if pct else ""
    return f"{m * scale:.{digits}f}{unit} ± {h * scale:.{digits}f}"


def teacher_cnn(seed: int, *, width: int = 32, augment: bool = True, name: str = "teacher"):
    """A CNN teacher (~150k parameters) for 8x8x1 digits, with translation augmentation while training."""
    import keras

    init = keras.initializers.GlorotUniform
    inputs = keras.Input((8, 8, 1), name="image")
    x = inputs
    if augment:
        x = keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant", seed=seed, name="shift")(x)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer=init(seed), name="c1")(x)
    x = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu", kernel_initializer=init(seed + 1),
                            name="c2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Dropout(0.25, seed=seed, name="drop1")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(128, activation="relu", kernel_initializer=init(seed + 2), name="fc")(x)
    x = keras.layers.Dropout(0.5, seed=seed, name="drop2")(x)
    outputs = keras.layers.Dense(10, kernel_initializer=init(seed + 3), name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def student_mlp(seed: int, *, units: int = 16, name: str = "student"):
    """A microcontroller-sized student: 8x8 → Dense(units) → 10 (~1.2k parameters at 16 units)."""
    import keras

    init = keras.initializers.GlorotUniform
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Flatten(name="flat")(inputs)
    x = keras.layers.Dense(units, activation="relu", kernel_initializer=init(seed), name="hidden")(x)
    outputs = keras.layers.Dense(10, kernel_initializer=init(seed + 1), name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def train_ce(model, x, y, *, epochs: int, batch_size: int = 32, lr: float = 3e-3, seed: int = 0):
    """Train on hard labels (cross-entropy on logits)."""
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return model


def accuracy(model, x, y) -> float:
    return float(np.mean(model.predict(x, verbose=0, batch_size=512).argmax(-1) == y))


def labeled_subset(y, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` examples of each class (the labeled part of a few-label setting)."""
    rng = np.random.default_rng(seed)
    idx = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    return np.sort(np.concatenate(idx))


def publish(name: str, body: str, *, write: bool) -> str:
    """Print a section and (unless ``write`` is False) store it in docs/benchmarks.md."""
    if write:
        from bench._report import write_section

        write_section(name, body, command=f"python bench/{name}.py")
    print(body)
    return body


def keras_default_logits_distillation() -> tuple[float, float]:
    """(Keras' default ``LogitsDistillation(T=4)`` value, the correct T²·KL) on fixed random logits."""
    import keras
    from keras.distillation import LogitsDistillation

    from edgekd.distill import distillation_terms

    rng = np.random.default_rng(0)
    s = rng.normal(size=(5, 4)).astype(np.float32)
    t = (3 * rng.normal(size=(5, 4))).astype(np.float32)
    theirs = float(LogitsDistillation(temperature=4.0).compute_loss(t, s))
    ours = float(distillation_terms(None, s, t, temperature=4.0, alpha=0.1)[2])
    del keras
    return theirs, ours
