// Host stand-in for ESP-IDF's freertos/task.h, for compile checks only (see README.md).
#ifndef EDGEKD_HOST_SHIM_FREERTOS_TASK_H_
#define EDGEKD_HOST_SHIM_FREERTOS_TASK_H_

#include "freertos/FreeRTOS.h"

#ifdef __cplusplus
extern "C" {
#endif
void vTaskDelay(const TickType_t ticks);
#ifdef __cplusplus
}
#endif

#endif  // EDGEKD_HOST_SHIM_FREERTOS_TASK_H_
