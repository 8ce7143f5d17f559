"""Hostile text for the generated C/C++: labels, file names, tensor and op names that try to break out."""

from __future__ import annotations

# Ten class labels, each trying another way to break a C string or comment, plus text a naive escaper
# mangles (characters outside the BMP, which json.dumps writes as surrogate pairs g++ rejects).
LABELS = [
    "line\nbreak\r\nand #define kNumClasses 0",
    "close */ comment /* open // slash",
    'quote " and \\ backslash \\',
    "emoji \U0001F600\U0001F389 outside the BMP",
    "trigraphs ??/ ??= ??( ??' and a trailing ??/",
    "control \x01\x07\x08\x0b\x0c\x1b[31m\x7f\ttab",
    "hex-looking \\x41 then digits \x01" + "Fe 123",
    "e\u0301 combining, \u4e2d\u6587, \u05e2\u05d1\u05e8\u05d9\u05ea, \u200b zero width",
    "%s %n %% printf",
    "",
]

# The same, but each on one line (no CR/LF): what the firmware prints per sample stays one line.
ONE_LINE_LABELS = [lb.replace("\r", "").replace("\n", " ") for lb in LABELS]

FILE_NAME = "evil\n#define g_model_data_len 0\n\"??= ??' *\\"  # a file's base name: anything but '/'
TENSOR_NAME = "in*/\n#error injected\n\"??/\\ {{ x }} __sketch__"  # and template syntax
OP_NAME = "X\n#error injected */ ??/\\"


# A C++ main printing each kClassLabels entry's bytes in hex, one label a line ("label 6c 69 …"), then the
# lines of EXTRA (a printf statement). Compile with model_data.cc (and whatever EXTRA uses).
PRINT_LABELS = r"""
#include <stdio.h>
#include <string.h>
#include "model_data.h"
%(includes)s
int main() {
  for (int i = 0; i < kNumClasses; ++i) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(kClassLabels[i]);
    printf("label");
    for (size_t k = 0; k < strlen(kClassLabels[i]); ++k) printf(" %%02x", p[k]);
    printf("\n");
  }
  %(extra)s
  return 0;
}
"""


def printed_labels(labels: list[str]) -> list[str]:
    """What :data:`PRINT_LABELS` prints for ``labels`` (their exact UTF-8 bytes)."""
    return [" ".join(["label", *(f"{b:02x}" for b in lb.encode())]) for lb in labels]


def rename(model: bytes, *, input_name: str | None = None, output_name: str | None = None,
           custom_op: str | None = None) -> bytes:
    """``model`` with its input/output tensors renamed, and its first op made a CUSTOM op named ``custom_op``."""
    import flatbuffers

    from edgekd.flatbuffer import FILE_IDENTIFIER, schema as fb_schema

    schema = fb_schema()
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    g = m.subgraphs[0]
    if input_name is not None:
        g.tensors[g.inputs[0]].name = input_name.encode()
    if output_name is not None:
        g.tensors[g.outputs[0]].name = output_name.encode()
    if custom_op is not None:
        code = m.operatorCodes[g.operators[0].opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = custom_op.encode()
    b = flatbuffers.Builder(len(model) + 1024)
    b.Finish(m.Pack(b), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())
