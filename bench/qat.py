"""Post-training int8 vs quantization-aware training vs quantization-aware distillation.

    python bench/qat.py [--seeds 3] [--quick]

Students: DS-CNN (edgekd.students.ds_cnn) at width 0.25 (16 channels),
MobileNetV1 (edgekd.students.mobilenet_v1) at width 0.25, and a 4-channel
DS-CNN (width 0.0625, built directly: the builder rounds channels to multiples
of 8), trained on the bundled digits. For each seed:

* float: the trained Keras 3 student;
* PTQ int8: ``edgekd.convert.convert(mode="int8")`` of it;
* FT+PTQ int8: the control: the float student fine-tuned for the same epochs
  and learning rate as QAT, then PTQ (so QAT gets no credit for extra training);
* QAT int8: ``quantize_aware`` then ``convert_qat``;
* QAT+KD int8: the same with a teacher CNN (``teacher=``, T=4, alpha=0.5).

Accuracies are of the int8 TFLite models run by LiteRT on the held-out
val+test images (540; neither split is used for training or model
selection). Goal: QAT recovers at least half of the int8 drop.
Then the distillation temperature sweep on the 4-channel student.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench._report import write_section  # noqa: E402

FLOAT_EPOCHS = 60
FT_EPOCHS = 5
FT_LR = 5e-4
TEMPERATURES = (1.0, 2.0, 4.0, 8.0)


def ds_cnn_4ch():
    """DS-CNN (4 blocks) with 4 channels, same layers and names as edgekd.students.ds_cnn."""
    import keras

    from edgekd.students import depthwise_separable_block

    L = keras.layers
    inp = keras.Input((8, 8, 1), name="input")
    x = L.Conv2D(4, (8, 4), strides=2, padding="same", use_bias=False, name="conv1")(inp)
    x = L.BatchNormalization(name="conv1_bn")(x)
    x = L.ReLU(name="conv1_relu")(x)
    x = L.Dropout(0.2, name="conv1_dropout")(x)
    for i in range(1, 5):
        x = depthwise_separable_block(x, 4, block_id=i, activation="relu")
    x = L.Dropout(0.4, name="dropout")(x)
    x = L.AveragePooling2D((4, 4), name="avg_pool")(x)
    x = L.Flatten(name="flatten")(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x), name="ds_cnn_4ch")


def _students():
    from edgekd.students import ds_cnn, mobilenet_v1

    # name -> (builder, float training epochs); the temperature sweep runs on the last one.
    return {
        "MobileNetV1 width 0.25": (lambda: mobilenet_v1((8, 8, 1), 10, width=0.25), 40),
        "DS-CNN width 0.25 (16 ch)": (lambda: ds_cnn((8, 8, 1), 10, width=0.25), FLOAT_EPOCHS),
        "DS-CNN 4 ch (width 0.0625)": (ds_cnn_4ch, FLOAT_EPOCHS),
    }


def _compile(model, lr):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def train_float(builder, ds, seed, epochs):
    import keras

    keras.utils.set_random_seed(seed)
    model = builder()
    steps = epochs * -(-len(ds.train) // 32)
    _compile(model, keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.05))
    model.fit(ds.train.x, ds.train.y, epochs=epochs, batch_size=32, verbose=0)
    return model


def train_teacher(ds, seed, epochs):
    import keras

    keras.utils.set_random_seed(1000 + seed)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(32, 3, padding="same", activation="relu")(inp)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, L.Dense(10)(x), name="teacher_cnn")
    _compile(model, 3e-3).fit(ds.train.x, ds.train.y, epochs=epochs, batch_size=32, verbose=0)
    return model


def accuracy_int8(model_bytes, x, y):
    from edgekd.convert.runtime import predict

    return float(np.mean(np.argmax(predict(model_bytes, x), -1) == y))


def run(seeds: int, quick: bool):
    import keras

    from edgekd.convert import convert
    from edgekd.datasets import digits
    from edgekd.optimize import convert_qat, quantize_aware

    ds = digits()
    hx = np.concatenate([ds.val.x, ds.test.x])
    hy = np.concatenate([ds.val.y, ds.test.y])
    students = _students()
    ft_epochs = 1 if quick else FT_EPOCHS
    rows = {name: [] for name in students}
    temps = {t: [] for t in TEMPERATURES}
    teacher_acc = []
    t0 = time.time()
    for seed in range(seeds):
        teacher = train_teacher(ds, seed, 6 if quick else 30)
        teacher_acc.append(float(np.mean(np.argmax(teacher.predict(hx, verbose=0), -1) == hy)))
        for name, (builder, float_epochs) in students.items():
            model = train_float(builder, ds, seed, 8 if quick else float_epochs)
            f_acc = float(np.mean(np.argmax(model.predict(hx, verbose=0), -1) == hy))
            ptq = accuracy_int8(convert(model, mode="int8", representative_data=ds.train.x), hx, hy)
            ft = keras.models.clone_model(model)
            ft.set_weights(model.get_weights())
            keras.utils.set_random_seed(seed)
            _compile(ft, FT_LR).fit(ds.train.x, ds.train.y, epochs=ft_epochs, batch_size=32, verbose=0)
            ft_ptq = accuracy_int8(convert(ft, mode="int8", representative_data=ds.train.x), hx, hy)
            common = dict(data=(ds.train.x, ds.train.y), epochs=ft_epochs, learning_rate=FT_LR, seed=seed)
            qat = accuracy_int8(convert_qat(quantize_aware(model, **common)), hx, hy)
            kd = {}
            for t in (TEMPERATURES if name == list(students)[-1] else (4.0,)):
                res = quantize_aware(model, teacher=teacher, temperature=t, alpha=0.5, **common)
                kd[t] = accuracy_int8(convert_qat(res), hx, hy)
                if name == list(students)[-1]:
                    temps[t].append((kd[t], res.history[-1].soft_loss))
            rows[name].append((f_acc, ptq, ft_ptq, qat, kd[4.0]))
            print(f"seed {seed} {name}: float {f_acc:.4f} ptq {ptq:.4f} ft+ptq {ft_ptq:.4f} qat {qat:.4f} "
                  f"qat+kd {kd[4.0]:.4f} ({time.time() - t0:.0f}s)", flush=True)
    return rows, temps, teacher_acc, time.time() - t0


def render(rows, temps, teacher_acc, seconds, seeds) -> str:
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    out = [
        "## QAT and quantization-aware distillation (`qat`)",
        "",
        "Accuracy (%) on the 540 held-out digits (val+test) of int8 TFLite models run by LiteRT, "
        f"{seeds} seeds. Students trained {FLOAT_EPOCHS} epochs (MobileNetV1: 40; Adam 3e-3, cosine decay); "
        "every fine-tuning "
        f"(FT, QAT, QAT+KD) is {FT_EPOCHS} epochs at lr {FT_LR:g}. *FT+PTQ* is the control: float fine-tuning "
        "for the same epochs, then post-training quantization. QAT+KD distils from a 2-conv CNN teacher "
        f"(float accuracy {100 * statistics.mean(teacher_acc):.2f} %) at T=4, alpha=0.5.",
        "",
    ]
    verdicts = []
    for name, rs in rows.items():
        out += [f"**{name}**", "", "| seed | float | PTQ int8 | FT+PTQ int8 | QAT int8 | QAT+KD int8 |",
                "|---|---|---|---|---|---|"]
        for i, r in enumerate(rs):
            out.append(f"| {i} | " + " | ".join(pct(v) for v in r) + " |")
        means = [statistics.mean(col) for col in zip(*rs)]
        out.append("| **mean** | " + " | ".join(f"**{pct(v)}**" for v in means) + " |")
        out.append("")
        f_acc, ptq, _, qat, kd = means
        drop = f_acc - ptq
        if drop > 1e-9:
            rec, rec_kd = (qat - ptq) / drop, (kd - ptq) / drop
            ok = "met" if rec >= 0.5 else "**not met**"
            verdicts.append(f"- {name}: PTQ int8 drop {100 * drop:.2f} points; QAT recovers {100 * rec:.0f} % "
                            f"of it, QAT+KD {100 * rec_kd:.0f} % (goal >= 50 %: {ok}).")
        else:
            verdicts.append(f"- {name}: PTQ int8 loses nothing on average ({100 * drop:+.2f} points): "
                            "nothing for QAT to recover; QAT int8 is "
                            f"{100 * (qat - f_acc):+.2f} points vs float.")
    out += ["Goal: QAT recovers at least half of the post-training int8 drop.", ""] + verdicts + [""]
    last = list(rows)[-1]
    out += [f"**Distillation temperature** (QAT+KD of the {last}, alpha=0.5; int8 accuracy, mean of {seeds} "
            "seeds; soft loss = T²·KL of the last epoch):", "", "| T | QAT+KD int8 | soft loss |", "|---|---|---|"]
    for t, vals in temps.items():
        if vals:
            out.append(f"| {t:g} | {pct(statistics.mean(v[0] for v in vals))} | "
                       f"{statistics.mean(v[1] for v in vals):.3f} |")
    out += ["", f"Total run time {seconds / 60:.1f} min."]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny epochs, no docs update (smoke test)")
    args = parser.parse_args()
    rows, temps, teacher_acc, seconds = run(args.seeds, args.quick)
    body = render(rows, temps, teacher_acc, seconds, args.seeds)
    print(body)
    if not args.quick:
        write_section("qat", body, command="python bench/qat.py")


if __name__ == "__main__":
    main()
