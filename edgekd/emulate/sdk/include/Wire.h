// Host stand-in for the Arduino Wire (I2C) library, for compile checks only (see README.md).
// Chirale_TensorFlowLite.h includes it through peripherals/peripherals.h; the generated
// firmware itself makes no I2C call.
#ifndef EDGEKD_HOST_SHIM_WIRE_H_
#define EDGEKD_HOST_SHIM_WIRE_H_

#include <stddef.h>
#include <stdint.h>

class TwoWire {
 public:
  void begin();
  void end();
  void setClock(uint32_t frequency);
  void beginTransmission(uint8_t address);
  uint8_t endTransmission(bool stop_bit = true);
  size_t requestFrom(uint8_t address, size_t length, bool stop_bit = true);
  size_t write(uint8_t data);
  int available();
  int read();
};

extern TwoWire Wire;

#endif  // EDGEKD_HOST_SHIM_WIRE_H_
