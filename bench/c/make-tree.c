// Bench helper: makes DIRS directories, each with a subdirectory, holding FILES empty files in all.
// Usage: make-tree ROOT DIRS FILES_PER_DIR
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: %s ROOT DIRS FILES_PER_DIR\n", argv[0]); return 2; }
  int dirs = atoi(argv[2]), files = atoi(argv[3]);
  char path[4096];
  for (int d = 0; d < dirs; d++) {
    snprintf(path, sizeof path, "%s/d%05d", argv[1], d);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/d%05d/sub", argv[1], d);
    mkdir(path, 0755);
    for (int f = 0; f < files; f++) {
      snprintf(path, sizeof path, f % 2 ? "%s/d%05d/sub/f%d" : "%s/d%05d/f%d", argv[1], d, f);
      int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) { perror(path); return 1; }
      close(fd);
    }
  }
  return 0;
}
