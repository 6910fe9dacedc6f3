#include "common/err.h"
#include "tests/td_test.h"

static void strerror_names_every_code(void)
{
    for (int e = 0; e < TD_ERR_COUNT; e++)
        TD_CHECK(strcmp(td_strerror((td_err)e), "unknown error") != 0);
    TD_CHECK_STR(td_strerror((td_err)999), "unknown error");
}

static void errf_formats_and_returns_code(void)
{
    char buf[64];
    td_err e = td_errf(buf, sizeof buf, TD_ESHAPE, "tensor %s: %d", "x", 3);
    TD_CHECK_EQ_INT(e, TD_ESHAPE);
    TD_CHECK_STR(buf, "tensor x: 3");
    TD_CHECK_EQ_INT(td_errf(NULL, 0, TD_EIO, "ignored"), TD_EIO);
}

TD_TEST_MAIN({"strerror_names_every_code", strerror_names_every_code},
             {"errf_formats_and_returns_code", errf_formats_and_returns_code})
