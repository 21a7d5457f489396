/* util: the small shared pieces every lttle module uses.
 *
 * Error convention: functions return 0 (or a non-negative count) on success
 * and a negative value on failure, after recording a one-line message with
 * lt_fail(). Callers add context with lt_fail_ctx() as the error travels up;
 * the CLI prints lt_errmsg() once, at the top. The message is thread-local.
 */
#ifndef LTTLE_UTIL_H
#define LTTLE_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define LT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LT_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* ---- errors ---------------------------------------------------------- */

/* Records a message and returns -1. */
int lt_fail(const char *fmt, ...) LT_PRINTF(1, 2);
/* Like lt_fail, appending ": strerror(errno)". */
int lt_fail_errno(const char *fmt, ...) LT_PRINTF(1, 2);
/* Prefixes the current message with "context: " and returns -1. */
int lt_fail_ctx(const char *fmt, ...) LT_PRINTF(1, 2);
const char *lt_errmsg(void);
void lt_clear_error(void);

/* ---- logging (stderr) ------------------------------------------------ */

enum lt_log_level { LT_LOG_ERROR, LT_LOG_WARN, LT_LOG_INFO, LT_LOG_DEBUG };
/* Level from $LTTLE_LOG (error|warn|info|debug), default warn. */
void lt_log_set_level(enum lt_log_level level);
enum lt_log_level lt_log_get_level(void);
void lt_log(enum lt_log_level level, const char *fmt, ...) LT_PRINTF(2, 3);
#define lt_error(...) lt_log(LT_LOG_ERROR, __VA_ARGS__)
#define lt_warn(...) lt_log(LT_LOG_WARN, __VA_ARGS__)
#define lt_info(...) lt_log(LT_LOG_INFO, __VA_ARGS__)
#define lt_debug(...) lt_log(LT_LOG_DEBUG, __VA_ARGS__)

/* ---- memory ---------------------------------------------------------- */

/* Allocation helpers that record an error on failure (never abort). */
void *lt_malloc(size_t n);
void *lt_calloc(size_t n, size_t size);
void *lt_realloc(void *p, size_t n);
char *lt_strdup(const char *s);
char *lt_strndup(const char *s, size_t n);
/* asprintf into a fresh string; NULL (with error) on failure. */
char *lt_sprintf(const char *fmt, ...) LT_PRINTF(1, 2);

/* Growable byte buffer. */
struct lt_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t limit; /* 0 = unlimited; appends past it fail */
};
int lt_buf_append(struct lt_buf *b, const void *data, size_t n);
int lt_buf_printf(struct lt_buf *b, const char *fmt, ...) LT_PRINTF(2, 3);
/* NUL-terminates without counting it in len. */
int lt_buf_cstr(struct lt_buf *b);
void lt_buf_free(struct lt_buf *b);

/* ---- line servers (lines.c) ------------------------------------------------
 * A unix-socket server that speaks newline-terminated lines, for control
 * channels: input per client is bounded (a longer line gets the
 * too-long reply, then the client is dropped), output too (a client that
 * stops reading is dropped), and lines published from any thread reach
 * every subscribed client. It owns an epoll fd: the owner watches
 * lt_lines_fd() for input in its own loop and calls lt_lines_dispatch(),
 * which runs on_line for each complete line, in that thread. */
#define LT_LINES_IN_MAX 4096
#define LT_LINES_OUT_MAX (1U << 20)
struct lt_lines;
struct lt_lines_client;
typedef void (*lt_lines_fn)(void *user, struct lt_lines_client *k, char *line);
int lt_lines_new(lt_lines_fn on_line, void *user, const char *too_long_reply,
		 struct lt_lines **out);
/* Binds and listens on the unix socket PATH (replacing a stale one). */
int lt_lines_listen(struct lt_lines *l, const char *path, int backlog);
/* Serves an already connected, non-blocking socket (it is closed later). */
int lt_lines_adopt(struct lt_lines *l, int fd, bool subscribed);
int lt_lines_fd(const struct lt_lines *l);
void lt_lines_dispatch(struct lt_lines *l);
/* Queues a reply line ('\n' added); only from on_line. */
void lt_lines_send(struct lt_lines_client *k, const char *line);
void lt_lines_subscribe(struct lt_lines_client *k);
/* Any thread: a line for every subscriber (dropped if the queue is full). */
void lt_lines_publish(struct lt_lines *l, const char *line);
/* Delivers what is queued and flushes every client, blocking briefly:
 * for the owner's last turn. */
void lt_lines_finish(struct lt_lines *l);
void lt_lines_free(struct lt_lines *l); /* also unlinks the socket */

/* ---- sha256 ---------------------------------------------------------- */

#define LT_SHA256_LEN 32
#define LT_SHA256_HEX 65 /* 64 hex + NUL */
struct lt_sha256;
struct lt_sha256 *lt_sha256_new(void);
int lt_sha256_update(struct lt_sha256 *h, const void *data, size_t n);
/* Writes 32 raw bytes to out and resets nothing; free with _free. */
int lt_sha256_final(struct lt_sha256 *h, uint8_t out[LT_SHA256_LEN]);
void lt_sha256_free(struct lt_sha256 *h);
void lt_hex(const uint8_t *in, size_t n, char *out /* 2n+1 */);
int lt_sha256_hex(const void *data, size_t n, char out[LT_SHA256_HEX]);
int lt_sha256_file_hex(const char *path, char out[LT_SHA256_HEX]);

/* ---- files ----------------------------------------------------------- */

/* mkdir -p with the given mode for created directories. */
int lt_mkdir_p(const char *path, mode_t mode);
/* rm -rf that never crosses into another filesystem's mounts or follows
 * symlinks. Missing path is not an error. */
int lt_rm_rf(const char *path);
bool lt_path_exists(const char *path);
/* Reads a whole file, refusing files larger than max. NUL-terminated. */
int lt_read_file(const char *path, size_t max, char **out, size_t *len);
int lt_write_all(int fd, const void *data, size_t n);
int lt_read_full(int fd, void *data, size_t n); /* 0 ok; -1 error/short */
int lt_fsync_dir(const char *dir);

/* Atomic file creation: write to a hidden temp file beside the final name,
 * then fsync + rename + fsync(dir) on commit. On abort (or a crash) no file
 * ever appears under the final name. */
struct lt_atomic {
	int fd;
	char *tmp_path;
	char *final_path;
};
int lt_atomic_open(struct lt_atomic *a, const char *final_path, mode_t mode);
int lt_atomic_commit(struct lt_atomic *a);
void lt_atomic_abort(struct lt_atomic *a);
/* Convenience: atomically replace path with data. */
int lt_write_file_atomic(const char *path, const void *data, size_t n, mode_t mode);

/* ---- paths ----------------------------------------------------------- */

/* $LTTLE_HOME, else $XDG_DATA_HOME/lttle, else ~/.local/share/lttle.
 * Returned string is owned by util (process lifetime). */
const char *lt_home(void);
/* Joins a and b with exactly one '/'. */
char *lt_path_join(const char *a, const char *b);

/* ---- parsing --------------------------------------------------------- */

/* "512", "64K", "100M", "2G" (binary units) -> bytes. */
int lt_parse_size(const char *s, uint64_t *out);
/* Human-readable size into buf ("12.3 MB"). */
const char *lt_human_size(uint64_t n, char *buf, size_t len);
int lt_parse_u64(const char *s, uint64_t *out);

/* ---- time ------------------------------------------------------------ */

uint64_t lt_now_ns(void);  /* CLOCK_MONOTONIC */
uint64_t lt_wall_ns(void); /* CLOCK_REALTIME */

/* ---- progress -------------------------------------------------------- */

/* Per-item progress: on a TTY, one redrawn line per item (docker-pull-like);
 * otherwise a plain line at start and finish of each item. Quiet mode
 * prints nothing. Single-threaded use. */
struct lt_progress;
struct lt_progress *lt_progress_new(FILE *out, bool quiet);
/* Returns an item id >= 0. total may be 0 when unknown. */
int lt_progress_add(struct lt_progress *p, const char *label, uint64_t total);
void lt_progress_update(struct lt_progress *p, int item, uint64_t done);
void lt_progress_done(struct lt_progress *p, int item, const char *status);
void lt_progress_free(struct lt_progress *p);

#endif
