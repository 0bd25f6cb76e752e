// Bench workload: forks N processes that each hold M socket fds, then waits until told to go.
// Usage: socket-workload N M ; prints "ready" when every child holds its sockets, and ends all of
// them when its stdin closes (so a bench that dies never leaves the workload behind).
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s PROCS SOCKETS\n", argv[0]); return 2; }
  int procs = atoi(argv[1]), socks = atoi(argv[2]);
  int ready[2];
  if (pipe(ready) != 0) { perror("pipe"); return 1; }
  pid_t parent = getpid();
  pid_t *kids = calloc((size_t)procs, sizeof *kids);
  if (!kids) { perror("calloc"); return 1; }
  for (int p = 0; p < procs; p++) {
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(0);
      close(ready[0]);
      for (int i = 0; i < socks; i++) {
        if (socket(AF_UNIX, SOCK_DGRAM, 0) < 0) { perror("socket"); _exit(1); }
      }
      char c = 1;
      if (write(ready[1], &c, 1) != 1) _exit(1);
      close(ready[1]);
      for (;;) pause();
    }
    kids[p] = pid;
  }
  close(ready[1]);
  int got = 0; char c;
  while (got < procs && read(ready[0], &c, 1) == 1) got++;
  if (got != procs) {
    fprintf(stderr, "only %d of %d children ready\n", got, procs);
    for (int p = 0; p < procs; p++) kill(kids[p], SIGKILL);
    return 1;
  }
  printf("ready %d\n", got);
  fflush(stdout);
  char buf[64];
  while (read(0, buf, sizeof buf) > 0) {}
  // End only our own children, by pid (never the process group: it holds whoever started us).
  for (int p = 0; p < procs; p++) kill(kids[p], SIGKILL);
  while (wait(NULL) > 0) {}
  return 0;
}
