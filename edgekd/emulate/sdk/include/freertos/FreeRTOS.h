// Host stand-in for ESP-IDF's FreeRTOS.h, for compile checks only (see README.md).
#ifndef EDGEKD_HOST_SHIM_FREERTOS_H_
#define EDGEKD_HOST_SHIM_FREERTOS_H_

#include <stdint.h>

typedef uint32_t TickType_t;
#define configTICK_RATE_HZ 1000
#define pdMS_TO_TICKS(ms) ((TickType_t)(((TickType_t)(ms) * (TickType_t)configTICK_RATE_HZ) / (TickType_t)1000U))

#endif  // EDGEKD_HOST_SHIM_FREERTOS_H_
