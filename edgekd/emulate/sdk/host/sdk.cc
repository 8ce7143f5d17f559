// Board-SDK stand-ins for running a generated project as a host program (edgekd/emulate): time is
// the host's monotonic clock, delays return at once (the firmware's 1 s pause between samples has
// nothing to wait for here). Serial (to stdout) and Wire are in ../common/serial_wire.cc.
#include <stdlib.h>
#include <time.h>

#include "Arduino.h"
#include "esp_heap_caps.h"
#include "esp_timer.h"
#include "freertos/task.h"

static int64_t MonotonicMicros() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

unsigned long micros(void) { return static_cast<unsigned long>(MonotonicMicros()); }
unsigned long millis(void) { return static_cast<unsigned long>(MonotonicMicros() / 1000); }
void delay(unsigned long) {}
void delayMicroseconds(unsigned int) {}
extern "C" int64_t esp_timer_get_time(void) { return MonotonicMicros(); }
extern "C" void vTaskDelay(const TickType_t) {}

// The host has no PSRAM: as on a module without it, a MALLOC_CAP_SPIRAM request fails and the
// firmware falls back to internal RAM. EDGEKD_HEAP_LIMIT (bytes) plays the largest free block.
static size_t HeapLimit() {
  const char* env = getenv("EDGEKD_HEAP_LIMIT");
  return env != nullptr ? static_cast<size_t>(strtoul(env, nullptr, 10)) : static_cast<size_t>(1) << 30;
}
extern "C" void* heap_caps_aligned_alloc(size_t alignment, size_t size, uint32_t caps) {
  if ((caps & MALLOC_CAP_SPIRAM) != 0 || size > HeapLimit()) return nullptr;
  return aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
}
extern "C" size_t heap_caps_get_largest_free_block(uint32_t) { return HeapLimit(); }
extern "C" void heap_caps_free(void* ptr) { free(ptr); }
