// Stand-in for the Arduino core (ArduinoCore-API): the part the generated firmware and
// Chirale_TensorFlowLite's own sources call, with the real signatures. Used to compile the
// generated projects on a build machine and to run them on the host or an emulated board
// (edgekd/emulate); the definitions are in ../<machine>/sdk.cc (see ../README.md).
#ifndef EDGEKD_HOST_SHIM_ARDUINO_H_
#define EDGEKD_HOST_SHIM_ARDUINO_H_

#include <stddef.h>
#include <stdint.h>

class HardwareSerialShim {
 public:
  void begin(unsigned long baud);
  size_t print(const char* text);
  size_t println(const char* text);
  int available();
  int read();
  explicit operator bool() const;
};

extern HardwareSerialShim Serial;
unsigned long micros(void);
unsigned long millis(void);
void delay(unsigned long ms);
void delayMicroseconds(unsigned int us);

#endif  // EDGEKD_HOST_SHIM_ARDUINO_H_
