// Host stand-in for the Arduino core, for compile checks only (see README.md).
#ifndef EDGEKD_HOST_SHIM_ARDUINO_H_
#define EDGEKD_HOST_SHIM_ARDUINO_H_

#include <stddef.h>
#include <stdint.h>

class HardwareSerialShim {
 public:
  void begin(unsigned long baud);
  size_t println(const char* text);
  explicit operator bool() const;
};

extern HardwareSerialShim Serial;
unsigned long micros(void);
unsigned long millis(void);
void delay(unsigned long ms);

#endif  // EDGEKD_HOST_SHIM_ARDUINO_H_
