// Stand-in for Chirale_TensorFlowLite's entry header when the TFLM tree under test
// is not that library (a tflite-micro or esp-tflite-micro checkout); see ../README.md.
#ifndef EDGEKD_HOST_SHIM_CHIRALE_TENSORFLOWLITE_H_
#define EDGEKD_HOST_SHIM_CHIRALE_TENSORFLOWLITE_H_

#include <Arduino.h>

#endif  // EDGEKD_HOST_SHIM_CHIRALE_TENSORFLOWLITE_H_
