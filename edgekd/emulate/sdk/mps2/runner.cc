// edgekd's emulation runner: runs the model of a generated project (its model_data, samples and
// op list) on TFLM, sample by sample, with a profiler that counts instructions per op. Prints
// what edgekd.emulate parses, in the generated firmware's own line formats plus:
//   ticks <sample> <total ticks of Invoke()>
//   op <sample> <node> <op name> <ticks>
// One tick is 40 instructions (sdk.cc). edgekd_runner.h is written by edgekd.emulate.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgekd_runner.h"
#include "model_data.h"
#include "model_ops.h"
#include "samples.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern "C" uint64_t edgekd_ticks(void);
extern "C" const char* volatile edgekd_current_op;

namespace {

constexpr int kMaxEvents = 512;
// Outside the profiler object, so that they are zero-initialised (.bss), not copied from flash (.data).
const char* g_tags[kMaxEvents];
uint64_t g_start[kMaxEvents];
uint64_t g_ticks[kMaxEvents];

class InstructionProfiler : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override {
    if (count_ >= kMaxEvents) return kMaxEvents;
    g_tags[count_] = tag;
    edgekd_current_op = tag;
#ifdef EDGEKD_FAULT_AT_OP  // tests: an undefined instruction in this op (a UsageFault, escalated to HardFault)
    if (count_ == EDGEKD_FAULT_AT_OP) __asm volatile("udf #0");
#endif
    g_start[count_] = edgekd_ticks();
    return count_++;
  }
  void EndEvent(uint32_t handle) override {
    const uint64_t now = edgekd_ticks();
    if (handle < kMaxEvents) g_ticks[handle] = now - g_start[handle];
    edgekd_current_op = "(between ops)";
  }
  void Reset() { count_ = 0; }
  uint32_t count() const { return count_; }
  const char* tag(uint32_t i) const { return g_tags[i]; }
  uint64_t ticks(uint32_t i) const { return g_ticks[i]; }

 private:
  uint32_t count_ = 0;
};

alignas(16) uint8_t tensor_arena[EDGEKD_ARENA_SIZE];

void PrintOutputBytes(int sample, const int8_t* q) {
  static const char kHex[] = "0123456789abcdef";
  for (int start = 0; start < kOutputSize; start += 32) {
    char hex[65];
    int n = 0;
    for (int k = start; k < kOutputSize && k < start + 32; ++k) {
      const uint8_t b = static_cast<uint8_t>(q[k]);
      hex[n++] = kHex[b >> 4];
      hex[n++] = kHex[b & 15];
    }
    hex[n] = '\0';
    printf("out %d %d %s\n", sample, start, hex);
  }
}

int Argmax(const int8_t* q, int n) {
  int best = 0;
  for (int k = 1; k < n; ++k) {
    if (q[k] > q[best]) best = k;
  }
  return best;
}

}  // namespace

int main() {
  static InstructionProfiler profiler;
  const tflite::Model* model = tflite::GetModel(EDGEKD_MODEL_DATA);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    printf("error: model schema version %d, TFLM supports %d\n", static_cast<int>(model->version()),
           TFLITE_SCHEMA_VERSION);
    return 1;
  }
  static ModelOpResolver resolver;  // the exported model_ops.h: the firmware's own registration
  if (RegisterModelOps(resolver) != kTfLiteOk) {
    printf("error: registering the model's ops failed\n");
    return 1;
  }
  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, sizeof(tensor_arena), nullptr,
                                              &profiler);
  edgekd_current_op = "(AllocateTensors)";
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    printf("error: AllocateTensors() failed with a %u-byte arena\n", static_cast<unsigned>(sizeof(tensor_arena)));
    return 1;
  }
  TfLiteTensor* input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);
  if (input->bytes != static_cast<size_t>(kInputSize) || output->bytes != static_cast<size_t>(kOutputSize)) {
    printf("error: input/output tensors are not the int8 tensors model_data.h was generated for\n");
    return 1;
  }
  printf("edgekd: arena used %u of %u bytes\n", static_cast<unsigned>(interpreter.arena_used_bytes()),
         static_cast<unsigned>(sizeof(tensor_arena)));
  for (int i = 0; i < samples::kNumSamples; ++i) {
    memcpy(input->data.int8, samples::kInputs[i], kInputSize);
    profiler.Reset();
    const uint64_t start = edgekd_ticks();
    const TfLiteStatus status = interpreter.Invoke();
    const uint64_t total = edgekd_ticks() - start;
    if (status != kTfLiteOk) {
      printf("error: Invoke() failed on sample %d in op %s\n", i, edgekd_current_op);
      return 1;
    }
    int max_diff = 0;
    for (int k = 0; k < kOutputSize; ++k) {
      const int d = abs(output->data.int8[k] - samples::kExpectedOutputs[i][k]);
      if (d > max_diff) max_diff = d;
    }
    const int predicted = Argmax(output->data.int8, kOutputSize);
    const int host = samples::kHostPredictions[i];
    printf("sample %d: predicted %d | host %d %s max_diff %d\n", i, predicted, host,
           predicted == host && max_diff <= samples::kOutputTolerance ? "MATCH" : "MISMATCH", max_diff);
    PrintOutputBytes(i, output->data.int8);
    printf("ticks %d %llu\n", i, static_cast<unsigned long long>(total));
    for (uint32_t e = 0; e < profiler.count(); ++e) {
      printf("op %d %u %s %llu\n", i, static_cast<unsigned>(e), profiler.tag(e),
             static_cast<unsigned long long>(profiler.ticks(e)));
    }
  }
  printf("edgekd: done\n");
  fflush(stdout);
  return 0;
}
