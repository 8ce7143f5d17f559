// Board-SDK stand-ins for QEMU's mps2-an386 (Cortex-M4F) under semihosting (edgekd/emulate):
// time comes from SysTick. Serial (to the semihosting console: newlib's rdimon) and Wire are in
// ../common/serial_wire.cc.
//
// SysTick counts the processor clock, which QEMU models at 25 MHz for this machine; under
// `-icount shift=0` QEMU's virtual clock advances exactly 1 ns per executed instruction, so one
// SysTick tick is 40 instructions. edgekd_ticks() extends the 24-bit counter with the number of
// wraps counted by SysTick_Handler.
#include <stdint.h>

#include "Arduino.h"

namespace {
volatile uint32_t* const kSysTick = reinterpret_cast<volatile uint32_t*>(0xE000E010);  // CSR, RVR, CVR
constexpr uint32_t kReload = 0xFFFFFFu;
volatile uint32_t g_wraps = 0;
}  // namespace

// Called by Reset_Handler before anything else runs.
extern "C" void edgekd_start_clock(void) {
  kSysTick[1] = kReload;  // RVR
  kSysTick[2] = 0;        // CVR: any write clears it; the next tick loads RVR
  kSysTick[0] = 0x7;      // CSR: processor clock, interrupt on reaching 0, enable
}

// The counter runs kReload..0; reaching 0 raises the interrupt that counts a wrap.
extern "C" void SysTick_Handler(void) { g_wraps = g_wraps + 1; }

// SysTick ticks since start-up (40 instructions each under -icount shift=0).
extern "C" uint64_t edgekd_ticks(void) {
  uint32_t hi, lo;
  do {
    hi = g_wraps;
    lo = kSysTick[2];
  } while (hi != g_wraps);
  if (lo == 0) return hi == 0 ? 0 : (static_cast<uint64_t>(hi) << 24) - 1;  // the wrap is already counted
  return (static_cast<uint64_t>(hi) << 24) + (kReload - lo);
}

unsigned long micros(void) { return static_cast<unsigned long>(edgekd_ticks() / 25u); }
unsigned long millis(void) { return static_cast<unsigned long>(edgekd_ticks() / 25000u); }
void delay(unsigned long) {}
void delayMicroseconds(unsigned int) {}
