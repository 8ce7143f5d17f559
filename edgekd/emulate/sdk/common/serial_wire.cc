// The Arduino Serial and Wire stand-ins every machine shares (edgekd/emulate): serial output goes to
// stdout — the host's, or the semihosting console under QEMU (newlib's rdimon) — and I2C does
// nothing. Each machine's sdk.cc defines the clock.
#include <stdio.h>

#include "Arduino.h"
#include "Wire.h"

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

void TwoWire::begin() {}
void TwoWire::end() {}
void TwoWire::setClock(uint32_t) {}
void TwoWire::beginTransmission(uint8_t) {}
uint8_t TwoWire::endTransmission(bool) { return 0; }
size_t TwoWire::requestFrom(uint8_t, size_t, bool) { return 0; }
size_t TwoWire::write(uint8_t) { return 0; }
int TwoWire::available() { return 0; }
int TwoWire::read() { return -1; }
