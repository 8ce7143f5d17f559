// edgekd.engine's host/QEMU runner for the interpreter: the same inputs and printout as
// engine_main.cc (with the ticks of Invoke()), through TFLM's MicroInterpreter and the exported
// model_data.h / model_ops.h.
#include <stdio.h>
#include <string.h>

#include "edgekd_ticks.h"

#include "edgekd_inputs.h"
#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifdef EDGEKD_RECORDING  // measurements: TFLM's planned activations, the head of the arena, are printed too
#include "tensorflow/lite/micro/recording_micro_interpreter.h"
using EdgekdInterpreter = tflite::RecordingMicroInterpreter;
#else
using EdgekdInterpreter = tflite::MicroInterpreter;
#endif

namespace {
alignas(16) unsigned char tensor_arena[EDGEKD_ARENA_BYTES];
}  // namespace

int main() {
  const tflite::Model* model = tflite::GetModel(g_model_data);
  static ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) {
    printf("error: registering the ops failed\n");
    return 1;
  }
  static EdgekdInterpreter interpreter(model, resolver, tensor_arena, sizeof(tensor_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    printf("error: AllocateTensors failed\n");
    return 1;
  }
  printf("edgekd: arena used %u\n", static_cast<unsigned>(interpreter.arena_used_bytes()));
#ifdef EDGEKD_RECORDING
  printf("edgekd: arena head %u\n", static_cast<unsigned>(
      interpreter.GetMicroAllocator().GetSimpleMemoryAllocator()->GetNonPersistentUsedBytes()));
#endif
  static const char kHex[] = "0123456789abcdef";
  TfLiteTensor* input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);
  for (int i = 0; i < kEdgekdNumInputs; ++i) {
    memcpy(input->data.raw, kEdgekdInputs[i], input->bytes);
    const unsigned long long start = EDGEKD_TICKS();
    const TfLiteStatus status = interpreter.Invoke();
    const unsigned long long ticks = EDGEKD_TICKS() - start;
    if (status != kTfLiteOk) {
      printf("error: Invoke failed on sample %d\n", i);
      return 1;
    }
    const unsigned char* out = reinterpret_cast<const unsigned char*>(output->data.raw);
    printf("out %d ", i);
    for (size_t k = 0; k < output->bytes; ++k) printf("%c%c", kHex[out[k] >> 4], kHex[out[k] & 15]);
    printf("\n");
    printf("ticks %d %llu\n", i, ticks);
  }
  printf("edgekd: done\n");
  fflush(stdout);
  return 0;
}
