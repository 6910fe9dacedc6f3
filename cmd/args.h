/* Option values for the subcommands: whole numbers and floats in a range. */
#ifndef TD_CMD_ARGS_H
#define TD_CMD_ARGS_H

/* 0 and *out set when s is a number in [lo, hi]; -1 otherwise. */
int td_arg_long(const char *s, long lo, long hi, long *out);
int td_arg_float(const char *s, float lo, float hi, float *out);

#endif
