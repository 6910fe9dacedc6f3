/* libFuzzer target for control-plane messages from peers (td_ctl_decode):
 * anything decodes or is refused with a message; what decodes re-encodes. */
#include <stdint.h>
#include <stdlib.h>

#include "proto/ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    td_ctl_msg *m = NULL;
    if (td_ctl_decode(data, size, &m, err, sizeof err) == TD_OK) {
        uint8_t *buf;
        size_t len;
        if (td_ctl_encode(m, &buf, &len, err, sizeof err) != TD_OK)
            abort();    /* a validated message must stay valid */
        free(buf);
        td_ctl_free(m);
    }
    return 0;
}
