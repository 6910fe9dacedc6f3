/* Subcommands of the `tandem` binary. Each returns the process exit status:
 * 0 success, 1 failure (message already printed), 2 usage error. */
#ifndef TD_CMD_H
#define TD_CMD_H

int cmd_serve(int argc, char **argv);
int cmd_router(int argc, char **argv);  /* cmd_serve.c */
int cmd_generate(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_kv_size(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_prefill(int argc, char **argv);  /* cmd_worker.c */
int cmd_decode(int argc, char **argv);
int cmd_not_yet(int argc, char **argv);

#endif
