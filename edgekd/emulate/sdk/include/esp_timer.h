// Host stand-in for ESP-IDF's esp_timer.h, for compile checks only (see README.md).
#ifndef EDGEKD_HOST_SHIM_ESP_TIMER_H_
#define EDGEKD_HOST_SHIM_ESP_TIMER_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
int64_t esp_timer_get_time(void);
#ifdef __cplusplus
}
#endif

#endif  // EDGEKD_HOST_SHIM_ESP_TIMER_H_
