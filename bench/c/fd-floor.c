// The floor for a socket census: one readdir per process and one readlink per fd, on one thread.
// Prints the number of processes holding sockets and the total socket fds.
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  const char *proc = argc > 1 ? argv[1] : "/proc";
  DIR *pd = opendir(proc);
  if (!pd) { perror(proc); return 1; }
  long total = 0, holders = 0;
  char path[512], link[256];
  struct dirent *pe;
  while ((pe = readdir(pd)) != NULL) {
    if (pe->d_name[0] < '0' || pe->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "%s/%s/fd", proc, pe->d_name);
    DIR *fd = opendir(path);
    if (!fd) continue;
    long n = 0;
    struct dirent *fe;
    while ((fe = readdir(fd)) != NULL) {
      if (fe->d_name[0] == '.') continue;
      snprintf(path, sizeof path, "%s/%s/fd/%s", proc, pe->d_name, fe->d_name);
      ssize_t len = readlink(path, link, sizeof link - 1);
      if (len > 7 && memcmp(link, "socket:", 7) == 0) n++;
    }
    closedir(fd);
    if (n > 0) { holders++; total += n; }
  }
  closedir(pd);
  printf("%ld processes hold %ld sockets\n", holders, total);
  return 0;
}
