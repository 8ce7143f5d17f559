"""C++ name lookup in the generated code, under each namespace layout TFLM has had.

These headers are not TFLM: they declare, in a few lines each, only *where* the
names the generated code uses live (``tflite::``, the global namespace,
``tflite::micro::``) in the layouts TFLM has had or may have, so that the
lookup rules the generated code relies on (docs/firmware.md, *Namespaces*) are
checked on every run. Compiling against real TFLM is test_tflm_headers.py's job.
Each layout also declares, as *types*, names equal to edgekd's own globals
(``kInputSize``, ``samples``, ``g_model_data``…) in ``tflite`` and
``tflite::micro``: code that named one of those unqualified would pick TFLM's
and fail to compile, instead of compiling with the wrong value.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.firmware.conftest import SHIMS, resolver_methods, syntax_check_command

C_TYPES = """
typedef enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef enum TfLiteType { kTfLiteNoType = 0, kTfLiteInt8 = 9 } TfLiteType;
typedef struct TfLiteQuantizationParams { float scale; int32_t zero_point; } TfLiteQuantizationParams;
typedef union TfLitePtrUnion { int8_t* int8; void* data; } TfLitePtrUnion;
typedef struct TfLiteTensor {
  TfLiteQuantizationParams params; TfLitePtrUnion data; size_t bytes; TfLiteType type;
} TfLiteTensor;
"""
CLASSES = """
class MicroOpResolver { public: virtual ~MicroOpResolver() {} };
class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& resolver, uint8_t* arena, size_t arena_size,
                   void* resource_variables = nullptr, void* profiler = nullptr, bool preserve = false);
  TfLiteStatus AllocateTensors();
  TfLiteStatus Invoke();
  TfLiteTensor* input(size_t index);
  TfLiteTensor* output(size_t index);
  size_t arena_used_bytes() const;
};
template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
%s
};
void InitializeTarget();
"""
# Names equal to edgekd's globals, as types: an unqualified use of one is a compile error.
DECOYS = """
struct kInputSize {}; struct kOutputSize {}; struct kInputScale {}; struct kInputZeroPoint {};
struct kOutputScale {}; struct kOutputZeroPoint {}; struct kNumClasses {}; struct kClassLabels {};
struct g_model_data {}; struct samples {}; struct model_io {};
"""
SCHEMA = "namespace tflite {\nstruct Model { int version() const; };\nconst Model* GetModel(const void* buf);\n}\n"

LAYOUTS = {
    # Chirale_TensorFlowLite 2.0.0 / esp-tflite-micro 1.3.x: classes in tflite, C types global.
    "tflite-and-global": C_TYPES + "namespace tflite {\n" + CLASSES + DECOYS
    + "namespace micro {\n" + DECOYS + "inline int GetTensorShape() { return 0; }\n}\n}\n",
    # tflite-micro main: both in tflite::micro.
    "tflite-micro": "namespace tflite {\n" + DECOYS + "namespace micro {\n" + C_TYPES + CLASSES + DECOYS
    + "}\n}\n",
    # tflite::micro, plus compatibility aliases in tflite and the global namespace.
    "tflite-micro-with-aliases": "namespace tflite {\n" + DECOYS + "namespace micro {\n" + C_TYPES + CLASSES
    + DECOYS + "}\nusing micro::MicroInterpreter;\nusing micro::InitializeTarget;\n"
    "template <unsigned int N> using MicroMutableOpResolver = micro::MicroMutableOpResolver<N>;\n}\n"
    "using tflite::micro::TfLiteTensor;\nusing tflite::micro::TfLiteStatus;\n",
    # tflite::micro, with LiteRT's own (distinct) global C types in the same translation unit.
    "tflite-micro-beside-litert": C_TYPES + "namespace tflite {\n" + DECOYS + "namespace micro {\n" + C_TYPES
    + CLASSES + DECOYS + "}\n}\n",
}


def _tree(root, layout: str):
    adds = "\n".join(f"  TfLiteStatus {m}();" for m in resolver_methods())
    micro = root / "tensorflow" / "lite" / "micro"
    micro.mkdir(parents=True)
    (root / "tensorflow" / "lite" / "schema").mkdir()
    (root / "tensorflow" / "lite" / "schema" / "schema_generated.h").write_text("#pragma once\n" + SCHEMA)
    body = LAYOUTS[layout].replace("%s", adds)
    (micro / "micro_interpreter.h").write_text(
        "#pragma once\n#include <stddef.h>\n#include <stdint.h>\n"
        '#include "tensorflow/lite/schema/schema_generated.h"\n#define TFLITE_SCHEMA_VERSION (3)\n' + body)
    for name in ("micro_mutable_op_resolver.h", "system_setup.h"):
        (micro / name).write_text('#pragma once\n#include "tensorflow/lite/micro/micro_interpreter.h"\n')
    return root


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_generated_code_compiles_under_each_layout(layout, generated_sources, tmp_path):
    tree = _tree(tmp_path / layout, layout)
    for kind, src in generated_sources.items():
        cmd = syntax_check_command(["g++"], kind, src, [SHIMS / "fallback", tree])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{kind} under {layout}:\n{proc.stderr[:4000]}"


def test_the_decoys_catch_an_unqualified_global(generated_sources, tmp_path):
    """The check above can fail: the same sketch with one `::` removed does not compile."""
    sketch = generated_sources["arduino"]
    text = sketch.read_text()
    assert text.count("::kInputSize") >= 2
    broken = tmp_path / "broken" / sketch.name
    broken.parent.mkdir()
    for f in sketch.parent.iterdir():
        (broken.parent / f.name).write_text(f.read_text())
    broken.write_text(text.replace("::kInputSize", "kInputSize", 1))
    tree = _tree(tmp_path / "tree", "tflite-and-global")
    cmd = syntax_check_command(["g++"], "arduino", broken, [SHIMS / "fallback", tree])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "kInputSize" in proc.stderr
