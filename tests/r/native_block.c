/* Native code for the unwinder's ground-truth tests (tests/test_native_unwind.py): R calls
 * xr_block through .C, and xr_call through .Call, down to xr_leaf, which writes the ready
 * file and then waits in pause() for good, a stable stack for xrtop and gdb to compare.
 * xr_signal gets there through a signal handler (a signal frame on the stack).
 * Plain C without R's headers, so one build loads into every R version. */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline)) void xr_leaf(const char *ready) {
  int fd = open(ready, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    (void)write(fd, "ok\n", 3);
    close(fd);
  }
  for (;;) pause();
}

__attribute__((noinline)) void xr_middle(const char *ready) {
  xr_leaf(ready);
  __asm__ volatile("" ::: "memory"); /* keeps the call a call, not a jump */
}

void xr_block(char **ready) {
  xr_middle(ready[0]);
  __asm__ volatile("" ::: "memory");
}

/* .Call: takes and returns a SEXP, seen here as an opaque pointer (libR's own functions
 * read it, resolved when R loads this file). */
extern void *STRING_ELT(void *x, long i);
extern const char *R_CHAR(void *x);

void *xr_call(void *path) {
  xr_middle(R_CHAR(STRING_ELT(path, 0)));
  return path;
}

static const char *xr_ready_path;

static void xr_handler(int sig) {
  (void)sig;
  xr_leaf(xr_ready_path);
}

void xr_signal(char **ready) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = xr_handler;
  sigemptyset(&action.sa_mask);
  sigaction(SIGUSR1, &action, NULL);
  xr_ready_path = ready[0];
  raise(SIGUSR1);
  __asm__ volatile("" ::: "memory");
}
