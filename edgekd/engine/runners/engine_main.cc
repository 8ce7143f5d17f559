// edgekd.engine's host/QEMU runner for a compiled engine: runs every input of inputs.h through
// <name>_invoke() and prints "out <sample> <hex of the output bytes>" and "ticks <sample> <ticks of the
// invoke>" per sample (ticks only under QEMU: -DEDGEKD_MPS2; 0 on the host).
#include <stdio.h>
#include <string.h>

#include "edgekd_ticks.h"

#include "edgekd_inputs.h"
#include "model_engine.h"

int main() {
  if (model_init() != 0) {
    printf("error: model_init failed\n");
    return 1;
  }
  static const char kHex[] = "0123456789abcdef";
  for (int i = 0; i < kEdgekdNumInputs; ++i) {
    memcpy(model_input(), kEdgekdInputs[i], model_input_bytes());
    const unsigned long long start = EDGEKD_TICKS();
    const int status = model_invoke();
    const unsigned long long ticks = EDGEKD_TICKS() - start;
    if (status != 0) {
      printf("error: model_invoke failed in op %d on sample %d\n", status - 1, i);
      return 1;
    }
    const unsigned char* out = reinterpret_cast<const unsigned char*>(model_output());
    printf("out %d ", i);
    for (size_t k = 0; k < model_output_bytes(); ++k) printf("%c%c", kHex[out[k] >> 4], kHex[out[k] & 15]);
    printf("\n");
    printf("ticks %d %llu\n", i, ticks);
  }
  printf("edgekd: done\n");
  fflush(stdout);
  return 0;
}
