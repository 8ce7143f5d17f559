// Start-up for QEMU's mps2-an386 (Cortex-M4F): the vector table, the FPU switched on before any
// floating-point instruction, then newlib's semihosting start-up (rdimon crt0: zeroes .bss, sets
// up the heap and stack, runs the constructors and main, and exits through semihosting).
// A fault prints what was running (edgekd_current_op, set by the runner's profiler) and exits 3.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern uint32_t __StackTop;
extern void _start(void);
extern void SysTick_Handler(void);
extern void edgekd_start_clock(void);
const char* volatile edgekd_current_op = "(setup)";

void Reset_Handler(void) {
  // CPACR: full access to CP10 and CP11 (the FPU).
  *(volatile uint32_t*)0xE000ED88 |= (0xFu << 20);
  __asm volatile("dsb\n\tisb");
  edgekd_start_clock();
  _start();
  for (;;) {
  }
}

static void Fault(const char* what) {
  printf("error: %s in op %s\n", what, edgekd_current_op);
  fflush(stdout);
  _exit(3);
}

void NMI_Handler(void) { Fault("NMI"); }
void HardFault_Handler(void) { Fault("HardFault"); }
void MemManage_Handler(void) { Fault("MemManage fault"); }
void BusFault_Handler(void) { Fault("BusFault"); }
void UsageFault_Handler(void) { Fault("UsageFault"); }
void Default_Handler(void) { Fault("unexpected interrupt"); }

__attribute__((section(".isr_vector"), used)) void (*const edgekd_vectors[16])(void) = {
    (void (*)(void))(&__StackTop), Reset_Handler, NMI_Handler, HardFault_Handler,
    MemManage_Handler, BusFault_Handler, UsageFault_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, SysTick_Handler,
};
