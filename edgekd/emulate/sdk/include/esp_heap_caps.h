// Stand-in for ESP-IDF's esp_heap_caps.h (components/heap): the capability-based allocator the
// generated firmware uses for an arena larger than a static array may be (ESP32: 160 KB of static
// DRAM). Same signatures as ESP-IDF; the definitions are in ../<machine>/sdk.cc (see ../README.md).
#ifndef EDGEKD_HOST_SHIM_ESP_HEAP_CAPS_H_
#define EDGEKD_HOST_SHIM_ESP_HEAP_CAPS_H_

#include <stddef.h>
#include <stdint.h>

#define MALLOC_CAP_8BIT (1 << 2)
#define MALLOC_CAP_SPIRAM (1 << 10)
#define MALLOC_CAP_INTERNAL (1 << 11)

#ifdef __cplusplus
extern "C" {
#endif

void* heap_caps_aligned_alloc(size_t alignment, size_t size, uint32_t caps);
size_t heap_caps_get_largest_free_block(uint32_t caps);
void heap_caps_free(void* ptr);

#ifdef __cplusplus
}
#endif

#endif  // EDGEKD_HOST_SHIM_ESP_HEAP_CAPS_H_
