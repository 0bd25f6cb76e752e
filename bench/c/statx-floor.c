// The floor for an attribute scan: a directory walk with one statx per entry, on one thread.
// Prints the entries seen and how many carry the immutable or append-only attribute.
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long entries, flagged;

static void walk(int parent, const char *name) {
  int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  DIR *d = fdopendir(fd);
  if (!d) { close(fd); return; }
  struct dirent *de;
  struct statx stx;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' && (de->d_name[1] == 0 || (de->d_name[1] == '.' && de->d_name[2] == 0))) continue;
    entries++;
    if (statx(fd, de->d_name, AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) != 0) continue;
    if (stx.stx_attributes & (STATX_ATTR_IMMUTABLE | STATX_ATTR_APPEND)) flagged++;
    if (S_ISDIR(stx.stx_mode)) walk(fd, de->d_name);
  }
  closedir(d);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) walk(AT_FDCWD, argv[i]);
  printf("%ld entries, %ld flagged\n", entries, flagged);
  return 0;
}
