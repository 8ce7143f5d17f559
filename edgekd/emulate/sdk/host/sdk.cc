// Board-SDK stand-ins for running a generated project as a host program (edgekd/emulate):
// serial output goes to stdout, time is the host's monotonic clock, delays return at once
// (the firmware's 1 s pause between samples has nothing to wait for here).
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "Arduino.h"
#include "Wire.h"
#include "esp_heap_caps.h"
#include "esp_timer.h"
#include "freertos/task.h"

HardwareSerialShim Serial;
TwoWire Wire;

void HardwareSerialShim::begin(unsigned long) {}
size_t HardwareSerialShim::print(const char* text) { return static_cast<size_t>(fputs(text, stdout) >= 0); }
size_t HardwareSerialShim::println(const char* text) {
  fputs(text, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  return 1;
}
int HardwareSerialShim::available() { return 0; }
int HardwareSerialShim::read() { return -1; }
HardwareSerialShim::operator bool() const { return true; }

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

void TwoWire::begin() {}
void TwoWire::end() {}
void TwoWire::setClock(uint32_t) {}
void TwoWire::beginTransmission(uint8_t) {}
uint8_t TwoWire::endTransmission(bool) { return 0; }
size_t TwoWire::requestFrom(uint8_t, size_t, bool) { return 0; }
size_t TwoWire::write(uint8_t) { return 0; }
int TwoWire::available() { return 0; }
int TwoWire::read() { return -1; }
