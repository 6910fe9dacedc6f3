#include "tests/td_test.h"
static void t(void) {}
TD_TEST_MAIN({"t", t})
