/* Logging to stderr with a level threshold. Nothing per token logs above
 * TD_LOG_DEBUG; debug calls compile to nothing unless TD_DEBUG_LOG is set. */
#ifndef TD_COMMON_LOG_H
#define TD_COMMON_LOG_H

typedef enum { TD_LOG_DEBUG, TD_LOG_INFO, TD_LOG_WARN, TD_LOG_ERROR } td_log_level;

void td_log_set_level(td_log_level level);
void td_log(td_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef TD_DEBUG_LOG
#define td_debug(...) td_log(TD_LOG_DEBUG, __VA_ARGS__)
#else
#define td_debug(...) ((void)0)
#endif

#endif
