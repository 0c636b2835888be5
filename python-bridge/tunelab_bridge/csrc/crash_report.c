/* On a fatal signal, one line on stderr naming the library whose code was running:
 *   TUNELAB_FATAL signal=SIGILL library=/path/libfoo.so offset=0x1234 symbol=foo_kernel
 * then the handler that was installed before (Python's faulthandler: the Python traceback) and
 * the default action. The kernel turns the line into a sentence for the notebook cell.
 *
 * The handler only formats into a stack buffer and calls write(2) and dladdr(3); it returns
 * with the previous handler restored, so the faulting instruction runs again and the previous
 * handler (or the default action) takes over. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

static const int kSignals[] = {SIGILL, SIGSEGV, SIGBUS, SIGFPE};
static struct sigaction previous[sizeof(kSignals) / sizeof(kSignals[0])];

static size_t append(char* out, size_t at, size_t size, const char* text) {
  while (*text && at + 1 < size) out[at++] = *text++;
  out[at] = 0;
  return at;
}

static size_t append_hex(char* out, size_t at, size_t size, unsigned long value) {
  char digits[2 + 2 * sizeof(value) + 1];
  int n = 0;
  do {
    digits[n++] = "0123456789abcdef"[value & 15];
    value >>= 4;
  } while (value);
  at = append(out, at, size, "0x");
  while (n > 0 && at + 1 < size) out[at++] = digits[--n];
  out[at] = 0;
  return at;
}

static const char* signal_name(int sig) {
  switch (sig) {
    case SIGILL: return "SIGILL";
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    default: return "SIG?";
  }
}

static void* faulting_instruction(int sig, siginfo_t* info, void* context) {
  ucontext_t* uc = (ucontext_t*)context;
#if defined(__x86_64__)
  if (uc) return (void*)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
  if (uc) return (void*)uc->uc_mcontext.pc;
#endif
  /* For SIGILL and SIGFPE the kernel reports the instruction's address here too. */
  return (sig == SIGILL || sig == SIGFPE) ? info->si_addr : NULL;
}

static void report(int sig, siginfo_t* info, void* context) {
  char line[1024];
  size_t at = append(line, 0, sizeof line, "TUNELAB_FATAL signal=");
  at = append(line, at, sizeof line, signal_name(sig));
  void* pc = faulting_instruction(sig, info, context);
  Dl_info where;
  if (pc && dladdr(pc, &where) && where.dli_fname) {
    at = append(line, at, sizeof line, " library=");
    at = append(line, at, sizeof line, where.dli_fname[0] ? where.dli_fname : "(the main program)");
    at = append(line, at, sizeof line, " offset=");
    at = append_hex(line, at, sizeof line, (unsigned long)((char*)pc - (char*)where.dli_fbase));
    if (where.dli_sname) {
      at = append(line, at, sizeof line, " symbol=");
      at = append(line, at, sizeof line, where.dli_sname);
    }
  }
  at = append(line, at, sizeof line, "\n");
  ssize_t ignored = write(2, line, at);
  (void)ignored;
  for (size_t i = 0; i < sizeof(kSignals) / sizeof(kSignals[0]); ++i) {
    if (kSignals[i] == sig) sigaction(sig, &previous[i], NULL);
  }
}

/* Installs the reporter in front of whatever handles these signals now; 0 on success. */
int tunelab_crash_report_install(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_sigaction = report;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  for (size_t i = 0; i < sizeof(kSignals) / sizeof(kSignals[0]); ++i) {
    if (sigaction(kSignals[i], &action, &previous[i]) != 0) return -1;
  }
  return 0;
}
