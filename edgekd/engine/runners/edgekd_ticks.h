// EDGEKD_TICKS(): SysTick ticks since start-up under QEMU's mps2-an386 (-DEDGEKD_MPS2; one tick is 40
// instructions, edgekd/emulate/sdk/mps2/sdk.cc); 0 on the host.
#ifndef EDGEKD_TICKS_H_
#define EDGEKD_TICKS_H_

#ifdef EDGEKD_MPS2
#include <stdint.h>
extern "C" uint64_t edgekd_ticks(void);
#define EDGEKD_TICKS() static_cast<unsigned long long>(edgekd_ticks())
#else
#define EDGEKD_TICKS() 0ull
#endif

#endif  // EDGEKD_TICKS_H_
