// Runs a generated firmware project as a host program: setup() once, then loop() once per
// embedded sample (argv[1] times), exactly as the board's runtime would call them.
#include <stdlib.h>

void setup();
void loop();

int main(int argc, char** argv) {
  const long runs = argc > 1 ? strtol(argv[1], nullptr, 10) : 1;
  setup();
  for (long i = 0; i < runs; ++i) loop();
  return 0;
}
