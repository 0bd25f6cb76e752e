// nodewarden's native helper: reads the immutable (i) and append-only (a) attributes with statx(2),
// which reports them without opening the file (lsattr opens every file and calls an ioctl).
// duTree measures allocated bytes under roots, as du does, with the same walk.
// scanTree walks whole trees on several threads (getdents, then one statx per entry) as async work, so
// the JavaScript thread never blocks; the budget and pacing of background sweeps stay in TypeScript.
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <node_api.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <stdint.h>
#include <stdatomic.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#ifndef STATX_ATTR_IMMUTABLE
#define STATX_ATTR_IMMUTABLE 0x00000010
#endif
#ifndef STATX_ATTR_APPEND
#define STATX_ATTR_APPEND 0x00000020
#endif

#define ATTR_I 1
#define ATTR_A 2

static int attr_bits(const struct statx *stx) {
  int bits = 0;
  if ((stx->stx_attributes_mask & STATX_ATTR_IMMUTABLE) && (stx->stx_attributes & STATX_ATTR_IMMUTABLE)) bits |= ATTR_I;
  if ((stx->stx_attributes_mask & STATX_ATTR_APPEND) && (stx->stx_attributes & STATX_ATTR_APPEND)) bits |= ATTR_A;
  return bits;
}

// An error message names at most the last PATH_SHOWN bytes of the path, after "..." when it is cut, so
// every part of the message is bounded and fits msg. The cut skips UTF-8 continuation bytes, so the
// message stays valid UTF-8 and the file's own name (the end of the path) is always in it.
#define PATH_SHOWN 256

static napi_value throw_errno(napi_env env, const char *what, const char *path, int err) {
  size_t len = strlen(path);
  const char *shown = path;
  const char *cut = "";
  if (len > PATH_SHOWN) {
    shown = path + len - PATH_SHOWN;
    while ((unsigned char)*shown >= 0x80 && (unsigned char)*shown < 0xC0) shown++;
    cut = "...";
  }
  char msg[32 + 3 + PATH_SHOWN + 128];
  snprintf(msg, sizeof msg, "%.16s %s%.*s: %.100s", what, cut, PATH_SHOWN, shown, strerror(err));
  napi_value code, message, error;
  napi_create_string_utf8(env, err == ENOENT ? "ENOENT" : err == ENOTDIR ? "ENOTDIR" : err == EACCES ? "EACCES" : "EIO", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_set_named_property(env, error, "code", code);
  napi_throw(env, error);
  return NULL;
}

static int get_path(napi_env env, napi_value value, char *buf, size_t len) {
  size_t got = 0;
  if (napi_get_value_string_utf8(env, value, buf, len, &got) != napi_ok || got >= len - 1) {
    napi_throw_type_error(env, NULL, "path must be a string shorter than 4096 bytes");
    return -1;
  }
  return 0;
}

// ---- the walk scanTree and duTree share: a queue of directories, read on several threads ----

typedef struct {
  char *path;
  int root; // index of the root it is under
} WalkDir;

typedef struct Walk {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  WalkDir *queue; // directories still to read
  size_t qlen, qcap;
  int busy; // threads reading a directory right now
  int stop; // set: the queue is drained without reading (duTree: 1 deadline, 2 budget)
  void (*read_one)(struct Walk *w, char *path, int root); // reads one directory, frees path
} Walk;

static void walk_init(Walk *w, void (*read_one)(Walk *, char *, int)) {
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->cond, NULL);
  w->read_one = read_one;
}

static void walk_free(Walk *w) {
  free(w->queue);
  pthread_mutex_destroy(&w->lock);
  pthread_cond_destroy(&w->cond);
}

// Called with w->lock held (or before the threads start).
static void walk_push(Walk *w, char *path, int root) {
  if (w->qlen == w->qcap) {
    w->qcap = w->qcap ? w->qcap * 2 : 256;
    w->queue = realloc(w->queue, w->qcap * sizeof *w->queue);
  }
  w->queue[w->qlen].path = path;
  w->queue[w->qlen].root = root;
  w->qlen++;
}

// Queues the subdirectories one reader found and wakes the others.
static void walk_queue(Walk *w, char **subdirs, int n, int root) {
  if (n == 0) return;
  pthread_mutex_lock(&w->lock);
  for (int i = 0; i < n; i++) walk_push(w, subdirs[i], root);
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

static void *walk_worker(void *arg) {
  Walk *w = arg;
  pthread_mutex_lock(&w->lock);
  for (;;) {
    while (w->qlen == 0 && w->busy > 0) pthread_cond_wait(&w->cond, &w->lock);
    if (w->qlen == 0) break; // nothing queued and nobody can queue more
    WalkDir next = w->queue[--w->qlen];
    if (w->stop) {
      free(next.path);
      continue;
    }
    w->busy++;
    pthread_mutex_unlock(&w->lock);
    w->read_one(w, next.path, next.root);
    pthread_mutex_lock(&w->lock);
    w->busy--;
    if (w->busy == 0 && w->qlen == 0) pthread_cond_broadcast(&w->cond);
  }
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

// Reads the queue to its end on `threads` threads, this one included.
static void walk_run(Walk *w, int threads) {
  pthread_t tids[32];
  int started = 0;
  for (int i = 0; i < threads - 1 && i < 32; i++) {
    if (pthread_create(&tids[started], NULL, walk_worker, w) == 0) started++;
  }
  walk_worker(w);
  for (int i = 0; i < started; i++) pthread_join(tids[i], NULL);
}

// open(2) of a directory whose path may be longer than PATH_MAX (a tree nested thousands deep): the
// path is opened in pieces, each relative to the last, none following a symlink.
static int open_dir_long(const char *path) {
  size_t len = strlen(path);
  if (len < 4000) return open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int fd = AT_FDCWD;
  const char *p = path;
  char piece[4096];
  while (*p) {
    size_t rest = strlen(p), take = rest;
    if (rest >= 4000) {
      take = 4000;
      while (take > 0 && p[take] != '/') take--;
      if (take == 0) {
        if (fd != AT_FDCWD) close(fd);
        errno = ENAMETOOLONG;
        return -1;
      }
    }
    memcpy(piece, p, take);
    piece[take] = 0;
    int next = openat(fd, take ? piece : "/", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd != AT_FDCWD) close(fd);
    if (next < 0) return -1;
    fd = next;
    p += take;
    while (*p == '/') p++;
  }
  return fd;
}

// Opens a directory to list it; its device in *dev. NULL (errno set) when it cannot be.
static DIR *open_listing(const char *path, dev_t *dev) {
  int fd = open_dir_long(path);
  if (fd < 0) return NULL;
  struct stat self;
  *dev = fstat(fd, &self) == 0 ? self.st_dev : 0;
  DIR *dir = fdopendir(fd);
  if (!dir) {
    int err = errno;
    close(fd);
    errno = err;
  }
  return dir;
}

// Settles an async work's promise with its result, or rejects it when the work failed; deletes the work.
static void settle_work(napi_env env, napi_status status, napi_deferred deferred, napi_async_work work, napi_value result, const char *failed) {
  if (status == napi_ok) napi_resolve_deferred(env, deferred, result);
  else {
    napi_value msg, err;
    napi_create_string_utf8(env, failed, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, deferred, err);
  }
  napi_delete_async_work(env, work);
}

// Queues `execute` off the JavaScript thread, `complete` back on it; returns the promise it settles.
static napi_value queue_work(napi_env env, const char *name, napi_async_execute_callback execute, napi_async_complete_callback complete, void *data, napi_async_work *work, napi_deferred *deferred) {
  napi_value promise, label;
  napi_create_promise(env, deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &label);
  napi_create_async_work(env, NULL, label, execute, complete, data, work);
  napi_queue_async_work(env, *work);
  return promise;
}

static void free_paths(char **paths, size_t n) {
  for (size_t i = 0; i < n; i++) free(paths[i]);
  free(paths);
}

// Reads an array of paths (each shorter than 4096 bytes). -1: not an array; -2: a bad path (thrown).
static int read_paths(napi_env env, napi_value arr, char ***out, uint32_t *count) {
  bool is_array = false;
  if (napi_is_array(env, arr, &is_array) != napi_ok || !is_array) return -1;
  uint32_t n = 0;
  napi_get_array_length(env, arr, &n);
  char **paths = calloc(n ? n : 1, sizeof *paths);
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    char buf[4096];
    napi_get_element(env, arr, i, &el);
    if (get_path(env, el, buf, sizeof buf) != 0) {
      free_paths(paths, i);
      return -2;
    }
    paths[i] = strdup(buf);
  }
  *out = paths;
  *count = n;
  return 0;
}

// ---- scanTree: the whole walk, on several threads, off the JavaScript thread ----

typedef struct {
  char *path;
  int bits;
} Hit;

typedef struct {
  Walk w; // first: a Walk * is a Scan *
  // input
  char **roots;
  size_t nroots;
  int threads;
  // results
  Hit *hits;
  size_t nhits, hcap;
  double entries;
  double errors;
  // napi
  napi_async_work work;
  napi_deferred deferred;
} Scan;


static char *join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  if (a > 0 && dir[a - 1] == '/') a--; // "/" + "var" is "/var", not "//var"
  char *out = malloc(a + b + 2);
  memcpy(out, dir, a);
  out[a] = '/';
  memcpy(out + a + 1, name, b + 1);
  return out;
}

// Reads one directory: entries counted, flagged ones recorded, subdirectories on the same filesystem
// queued. Returns nothing; errors are counted.
static void read_one(Walk *w, char *path, int root) {
  Scan *s = (Scan *)w;
  dev_t self_dev;
  DIR *dir = open_listing(path, &self_dev);
  if (!dir) {
    pthread_mutex_lock(&w->lock);
    s->errors++;
    pthread_mutex_unlock(&w->lock);
    free(path);
    return;
  }
  int fd = dirfd(dir);
  struct dirent *de;
  struct statx stx;
  double n = 0;
  char *subdirs[64];
  int nsub = 0;
  while ((de = readdir(dir)) != NULL) {
    const char *name = de->d_name;
    if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
    n++;
    if (statx(fd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) != 0) continue;
    int bits = attr_bits(&stx);
    if (bits) {
      pthread_mutex_lock(&w->lock);
      if (s->nhits == s->hcap) {
        s->hcap = s->hcap ? s->hcap * 2 : 16;
        s->hits = realloc(s->hits, s->hcap * sizeof *s->hits);
      }
      s->hits[s->nhits].path = join(path, name);
      s->hits[s->nhits].bits = bits;
      s->nhits++;
      pthread_mutex_unlock(&w->lock);
    }
    if (S_ISDIR(stx.stx_mode) && makedev(stx.stx_dev_major, stx.stx_dev_minor) == self_dev) {
      subdirs[nsub++] = join(path, name);
      if (nsub == 64) {
        walk_queue(w, subdirs, nsub, root);
        nsub = 0;
      }
    }
  }
  closedir(dir);
  free(path);
  pthread_mutex_lock(&w->lock);
  s->entries += n;
  pthread_mutex_unlock(&w->lock);
  walk_queue(w, subdirs, nsub, root);
}

static void scan_execute(napi_env env, void *data) {
  (void)env;
  Scan *s = data;
  // The roots themselves may carry the attribute too.
  for (size_t i = 0; i < s->nroots; i++) {
    struct statx stx;
    if (statx(AT_FDCWD, s->roots[i], AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) != 0) {
      s->errors++;
      continue;
    }
    int bits = attr_bits(&stx);
    if (bits) {
      if (s->nhits == s->hcap) {
        s->hcap = s->hcap ? s->hcap * 2 : 16;
        s->hits = realloc(s->hits, s->hcap * sizeof *s->hits);
      }
      s->hits[s->nhits].path = strdup(s->roots[i]);
      s->hits[s->nhits].bits = bits;
      s->nhits++;
    }
    if (S_ISDIR(stx.stx_mode)) walk_push(&s->w, strdup(s->roots[i]), 0);
  }
  walk_run(&s->w, s->threads);
}

static void scan_complete(napi_env env, napi_status status, void *data) {
  Scan *s = data;
  napi_value result, hits, entries, errors;
  napi_create_object(env, &result);
  napi_create_array_with_length(env, s->nhits, &hits);
  for (size_t i = 0; i < s->nhits; i++) {
    napi_value pair, p, b;
    napi_create_array_with_length(env, 2, &pair);
    napi_create_string_utf8(env, s->hits[i].path, NAPI_AUTO_LENGTH, &p);
    napi_create_int32(env, s->hits[i].bits, &b);
    napi_set_element(env, pair, 0, p);
    napi_set_element(env, pair, 1, b);
    napi_set_element(env, hits, (uint32_t)i, pair);
    free(s->hits[i].path);
  }
  napi_create_double(env, s->entries, &entries);
  napi_create_double(env, s->errors, &errors);
  napi_set_named_property(env, result, "entries", entries);
  napi_set_named_property(env, result, "errors", errors);
  napi_set_named_property(env, result, "flagged", hits);
  settle_work(env, status, s->deferred, s->work, result, "scanTree failed");
  free_paths(s->roots, s->nroots);
  free(s->hits);
  walk_free(&s->w);
  free(s);
}

// scanTree(roots: string[], threads: number): Promise<{ entries, errors, flagged: [path, bits][] }>
// Walks every root with `threads` threads (one statx per entry), without crossing into other
// filesystems and without following symlinks.
static napi_value scan_tree(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char **roots = NULL;
  uint32_t n = 0;
  int rc = argc < 2 ? -1 : read_paths(env, argv[0], &roots, &n);
  if (rc != 0) {
    if (rc == -1) napi_throw_type_error(env, NULL, "scanTree(roots: string[], threads: number)");
    return NULL;
  }
  int32_t threads = 1;
  napi_get_value_int32(env, argv[1], &threads);
  if (threads < 1) threads = 1;
  if (threads > 16) threads = 16;
  Scan *s = calloc(1, sizeof *s);
  s->threads = threads;
  s->roots = roots;
  s->nroots = n;
  walk_init(&s->w, read_one);
  return queue_work(env, "nodewarden.scanTree", scan_execute, scan_complete, s, &s->work, &s->deferred);
}

// attrsOf(path): bits (0 when neither), or throws (ENOENT when gone). Does not follow symlinks.
static napi_value attrs_of(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "attrsOf(path)");
    return NULL;
  }
  char path[4096];
  if (get_path(env, argv[0], path, sizeof path) != 0) return NULL;
  struct statx stx;
  if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) != 0) {
    return throw_errno(env, "statx", path, errno);
  }
  napi_value out;
  napi_create_int32(env, attr_bits(&stx), &out);
  return out;
}

// ---- duTree: allocated bytes per root, as du counts them, on several threads ----
// Each root's bytes are st_blocks * 512 of everything under it on the root's own filesystem: a
// subdirectory on another device (a mount point) is neither entered nor counted, symlinks are never
// followed, a file with several hard links is counted once per walk (the first root to reach it), and
// directories listed in `excludes` are not entered (another root measures them). The walk stops at its
// deadline or its entry budget and says which ("partial").

typedef struct {
  Walk w; // first: a Walk * is a Du *
  char **roots;
  size_t nroots;
  int threads;
  double deadline; // CLOCK_MONOTONIC seconds
  double max_entries;
  // excludes: open addressing, read-only after set-up
  char **ex;
  size_t excap;
  // hard links seen: (dev, ino) pairs, open addressing
  uint64_t *links;
  size_t lcap, llen;
  // results per root
  double *bytes;
  double *entries;
  long long *dev; // -1 unknown
  long long *want; // the device each root must be on (-1: any); a root elsewhere is not walked
  int *kind; // 0 missing, 1 dir, 2 file, 3 other, 4 elsewhere
  double total_entries;
  double errors;
  napi_async_work work;
  napi_deferred deferred;
} Du;

static uint64_t fnv(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static int excluded(const Du *d, const char *path) {
  if (!d->excap) return 0;
  for (size_t i = fnv(path) & (d->excap - 1);; i = (i + 1) & (d->excap - 1)) {
    if (!d->ex[i]) return 0;
    if (strcmp(d->ex[i], path) == 0) return 1;
  }
}

// True the first time (dev, ino) is seen. Called with d->w.lock held.
static int first_link(Du *d, uint64_t dev, uint64_t ino) {
  if ((d->llen + 1) * 2 > d->lcap) {
    size_t ncap = d->lcap ? d->lcap * 2 : 1024;
    uint64_t *n = calloc(ncap * 2, sizeof *n);
    for (size_t i = 0; i < d->lcap; i++) {
      uint64_t a = d->links[2 * i], b = d->links[2 * i + 1];
      if (!a && !b) continue;
      size_t j = (size_t)((a * 0x9E3779B97F4A7C15ULL) ^ b) & (ncap - 1);
      while (n[2 * j] || n[2 * j + 1]) j = (j + 1) & (ncap - 1);
      n[2 * j] = a;
      n[2 * j + 1] = b;
    }
    free(d->links);
    d->links = n;
    d->lcap = ncap;
  }
  uint64_t a = dev + 1, b = ino; // dev + 1: never the empty (0, 0) slot
  size_t j = (size_t)((a * 0x9E3779B97F4A7C15ULL) ^ b) & (d->lcap - 1);
  while (d->links[2 * j] || d->links[2 * j + 1]) {
    if (d->links[2 * j] == a && d->links[2 * j + 1] == b) return 0;
    j = (j + 1) & (d->lcap - 1);
  }
  d->links[2 * j] = a;
  d->links[2 * j + 1] = b;
  d->llen++;
  return 1;
}

static double now_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}


// Counts one statx answer; returns the bytes to add (0 for a hard link seen before).
static double du_bytes(Du *d, const struct statx *stx) {
  double b = (double)stx->stx_blocks * 512.0;
  if (!S_ISDIR(stx->stx_mode) && stx->stx_nlink > 1) {
    pthread_mutex_lock(&d->w.lock);
    int first = first_link(d, makedev(stx->stx_dev_major, stx->stx_dev_minor), stx->stx_ino);
    pthread_mutex_unlock(&d->w.lock);
    if (!first) return 0;
  }
  return b;
}

#define DU_MASK (STATX_TYPE | STATX_BLOCKS | STATX_INO | STATX_NLINK)
#define DU_FLAGS (AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_DONT_SYNC)

static void du_read_one(Walk *w, char *path, int root) {
  Du *d = (Du *)w;
  dev_t self_dev;
  DIR *dir = open_listing(path, &self_dev);
  if (!dir) {
    pthread_mutex_lock(&w->lock);
    if (errno != ENOENT && errno != ENOTDIR) d->errors++; // gone during the walk: not an error
    pthread_mutex_unlock(&w->lock);
    free(path);
    return;
  }
  int fd = dirfd(dir);
  struct dirent *de;
  struct statx stx;
  double n = 0, bytes = 0;
  char *subdirs[64];
  int nsub = 0;
  while ((de = readdir(dir)) != NULL) {
    const char *name = de->d_name;
    if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
    if ((((long)n) & 1023) == 1023 && (w->stop || now_mono() > d->deadline)) {
      if (!w->stop) w->stop = 1;
      break;
    }
    if (statx(fd, name, DU_FLAGS, DU_MASK, &stx) != 0) continue; // vanished since readdir
    if (makedev(stx.stx_dev_major, stx.stx_dev_minor) != self_dev) continue; // a mount point
    char *sub = NULL;
    if (S_ISDIR(stx.stx_mode)) {
      sub = join(path, name);
      if (excluded(d, sub)) { // measured by another root, its own blocks included
        free(sub);
        continue;
      }
    }
    n++;
    bytes += du_bytes(d, &stx);
    if (sub) {
      subdirs[nsub++] = sub;
      if (nsub == 64) {
        walk_queue(w, subdirs, nsub, root);
        nsub = 0;
      }
    }
  }
  closedir(dir);
  free(path);
  pthread_mutex_lock(&w->lock);
  d->entries[root] += n;
  d->bytes[root] += bytes;
  d->total_entries += n;
  if (!w->stop && d->total_entries > d->max_entries) w->stop = 2;
  if (!w->stop && now_mono() > d->deadline) w->stop = 1;
  pthread_mutex_unlock(&w->lock);
  walk_queue(w, subdirs, nsub, root);
}

static void du_execute(napi_env env, void *data) {
  (void)env;
  Du *d = data;
  for (size_t i = 0; i < d->nroots; i++) {
    struct statx stx;
    d->dev[i] = -1;
    if (statx(AT_FDCWD, d->roots[i], DU_FLAGS, DU_MASK, &stx) != 0) {
      d->kind[i] = 0;
      continue;
    }
    d->dev[i] = (long long)makedev(stx.stx_dev_major, stx.stx_dev_minor);
    if (d->want[i] >= 0 && d->want[i] != d->dev[i]) {
      d->kind[i] = 4; // another filesystem (a tmpfs emptyDir, /proc under /): not this walk's
      continue;
    }
    d->kind[i] = S_ISDIR(stx.stx_mode) ? 1 : S_ISREG(stx.stx_mode) ? 2 : 3;
    d->entries[i] = 1;
    d->total_entries++;
    d->bytes[i] = du_bytes(d, &stx);
    if (S_ISDIR(stx.stx_mode)) walk_push(&d->w, strdup(d->roots[i]), (int)i);
  }
  walk_run(&d->w, d->threads);
}

static void du_complete(napi_env env, napi_status status, void *data) {
  Du *d = data;
  napi_value result, roots, v;
  napi_create_object(env, &result);
  napi_create_array_with_length(env, d->nroots, &roots);
  static const char *kinds[] = {"missing", "dir", "file", "other", "elsewhere"};
  for (size_t i = 0; i < d->nroots; i++) {
    napi_value r;
    napi_create_object(env, &r);
    napi_create_double(env, d->bytes[i], &v);
    napi_set_named_property(env, r, "bytes", v);
    napi_create_double(env, d->entries[i], &v);
    napi_set_named_property(env, r, "entries", v);
    if (d->dev[i] >= 0) {
      char buf[48];
      snprintf(buf, sizeof buf, "%u:%u", major((dev_t)d->dev[i]), minor((dev_t)d->dev[i]));
      napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &v);
    } else napi_get_null(env, &v);
    napi_set_named_property(env, r, "dev", v);
    napi_create_string_utf8(env, kinds[d->kind[i]], NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, r, "kind", v);
    napi_set_element(env, roots, (uint32_t)i, r);
  }
  napi_set_named_property(env, result, "roots", roots);
  napi_create_double(env, d->total_entries, &v);
  napi_set_named_property(env, result, "entries", v);
  napi_create_double(env, d->errors, &v);
  napi_set_named_property(env, result, "errors", v);
  if (d->w.stop) napi_create_string_utf8(env, d->w.stop == 1 ? "deadline" : "budget", NAPI_AUTO_LENGTH, &v);
  else napi_get_null(env, &v);
  napi_set_named_property(env, result, "partial", v);
  settle_work(env, status, d->deferred, d->work, result, "duTree failed");
  free_paths(d->roots, d->nroots);
  free_paths(d->ex, d->excap);
  free(d->links);
  free(d->bytes);
  free(d->entries);
  free(d->dev);
  free(d->want);
  free(d->kind);
  walk_free(&d->w);
  free(d);
}

// duTree(roots: string[], threads: number, timeoutMs: number, maxEntries: number, excludes: string[],
//        devices: (string | null)[])  (each root's required device, "major:minor", or null for any)
//   : Promise<{ roots: { bytes, entries, dev, kind }[], entries, errors, partial: null | 'deadline' | 'budget' }>
static napi_value du_tree(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 6) {
    napi_throw_type_error(env, NULL, "duTree(roots: string[], threads: number, timeoutMs: number, maxEntries: number, excludes: string[], devices: (string | null)[])");
    return NULL;
  }
  char **roots = NULL, **ex = NULL;
  uint32_t nroots = 0, nex = 0;
  int rc = read_paths(env, argv[0], &roots, &nroots);
  if (rc != 0) {
    if (rc == -1) napi_throw_type_error(env, NULL, "duTree: roots must be an array of paths");
    return NULL;
  }
  rc = read_paths(env, argv[4], &ex, &nex);
  if (rc != 0) {
    free_paths(roots, nroots);
    if (rc == -1) napi_throw_type_error(env, NULL, "duTree: excludes must be an array of paths");
    return NULL;
  }
  int32_t threads = 1;
  double timeout_ms = 60000, max_entries = 1e7;
  napi_get_value_int32(env, argv[1], &threads);
  napi_get_value_double(env, argv[2], &timeout_ms);
  napi_get_value_double(env, argv[3], &max_entries);
  if (threads < 1) threads = 1;
  if (threads > 32) threads = 32;
  Du *d = calloc(1, sizeof *d);
  d->roots = roots;
  d->nroots = nroots;
  d->threads = threads;
  d->deadline = now_mono() + timeout_ms / 1000.0;
  d->max_entries = max_entries;
  size_t excap = 16;
  while (excap < (size_t)nex * 2 + 2) excap *= 2;
  d->excap = nex ? excap : 0;
  d->ex = nex ? calloc(excap, sizeof *d->ex) : NULL;
  for (uint32_t i = 0; i < nex; i++) {
    if (excluded(d, ex[i])) {
      free(ex[i]);
      continue;
    }
    size_t j = fnv(ex[i]) & (excap - 1);
    while (d->ex[j]) j = (j + 1) & (excap - 1);
    d->ex[j] = ex[i];
  }
  free(ex);
  size_t n = nroots ? nroots : 1;
  d->bytes = calloc(n, sizeof *d->bytes);
  d->entries = calloc(n, sizeof *d->entries);
  d->dev = calloc(n, sizeof *d->dev);
  d->kind = calloc(n, sizeof *d->kind);
  d->want = calloc(n, sizeof *d->want);
  for (uint32_t i = 0; i < nroots; i++) {
    napi_value el;
    char buf[64];
    size_t got = 0;
    unsigned int maj = 0, mnr = 0;
    d->want[i] = -1;
    if (napi_get_element(env, argv[5], i, &el) == napi_ok && napi_get_value_string_utf8(env, el, buf, sizeof buf, &got) == napi_ok && sscanf(buf, "%u:%u", &maj, &mnr) == 2) d->want[i] = (long long)makedev(maj, mnr);
  }
  walk_init(&d->w, du_read_one);
  return queue_work(env, "nodewarden.duTree", du_execute, du_complete, d, &d->work, &d->deferred);
}

// statfs(2) of one path on a thread of its own, settling a promise: a statfs of a hung mount (a dead NFS
// server, a frozen FUSE daemon) blocks in the kernel, and on libuv's pool it would hold one of its four
// threads for good. Here only this thread waits; the caller keeps its own deadline and never asks the
// same path again while one is outstanding (agent/host/access.ts). The thread is detached and the
// thread-safe function unreferenced, so a stuck statfs never keeps the process from exiting.
typedef struct {
  char *path;
  int err;
  struct statfs st;
  napi_threadsafe_function tsfn;
  napi_deferred deferred;
  napi_env env;
  // Set by the environment's cleanup hook (the process is exiting): the thread must not touch the
  // thread-safe function any more, whose mutex Node is about to destroy (touching it aborts the process).
  pthread_mutex_t lock;
  int closing;
  // Two owners, the thread and the settling callback: whoever lets go last frees the job (the callback
  // may run on the main thread before the thread has unlocked).
  atomic_int refs;
} statfs_job;

static void statfs_job_free(statfs_job *j) {
  pthread_mutex_destroy(&j->lock);
  free(j->path);
  free(j);
}

static void statfs_job_release(statfs_job *j) {
  if (atomic_fetch_sub(&j->refs, 1) == 1) statfs_job_free(j);
}

static void statfs_env_closing(void *arg) {
  statfs_job *j = arg;
  pthread_mutex_lock(&j->lock);
  j->closing = 1;
  pthread_mutex_unlock(&j->lock);
}

static void statfs_settle(napi_env env, napi_value js_cb, void *context, void *data) {
  statfs_job *j = data;
  if (env != NULL) {
    if (j->err != 0) {
      napi_value code, message, error;
      char msg[64];
      snprintf(msg, sizeof msg, "statfs: %.50s", strerror(j->err));
      napi_create_string_utf8(env, j->err == ENOENT ? "ENOENT" : j->err == ENOTDIR ? "ENOTDIR" : j->err == EACCES ? "EACCES" : "EIO", NAPI_AUTO_LENGTH, &code);
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
      napi_create_error(env, code, message, &error);
      napi_set_named_property(env, error, "code", code);
      napi_reject_deferred(env, j->deferred, error);
    } else {
      napi_value out, v;
      napi_create_object(env, &out);
      double bsize = j->st.f_frsize ? (double)j->st.f_frsize : (double)j->st.f_bsize;
      const char *names[] = {"blockSize", "blocks", "blocksFree", "blocksAvailable", "inodes", "inodesFree"};
      double vals[] = {bsize, (double)j->st.f_blocks, (double)j->st.f_bfree, (double)j->st.f_bavail, (double)j->st.f_files, (double)j->st.f_ffree};
      for (int i = 0; i < 6; i++) {
        napi_create_double(env, vals[i], &v);
        napi_set_named_property(env, out, names[i], v);
      }
      napi_resolve_deferred(env, j->deferred, out);
    }
    napi_remove_env_cleanup_hook(env, statfs_env_closing, j);
  }
  statfs_job_release(j);
}

static void *statfs_thread(void *arg) {
  statfs_job *j = arg;
  j->err = statfs(j->path, &j->st) == 0 ? 0 : errno;
  pthread_mutex_lock(&j->lock);
  if (j->closing) {
    // Exiting: nobody will settle the answer, and the job is this thread's alone to free.
    pthread_mutex_unlock(&j->lock);
    statfs_job_free(j);
    return NULL;
  }
  napi_threadsafe_function tsfn = j->tsfn;
  if (napi_call_threadsafe_function(tsfn, j, napi_tsfn_nonblocking) != napi_ok) atomic_fetch_sub(&j->refs, 1); // never settled
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  pthread_mutex_unlock(&j->lock);
  statfs_job_release(j);
  return NULL;
}

static napi_value statfs_async(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char buf[4096];
  size_t got = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], buf, sizeof buf, &got) != napi_ok || got == 0 || got >= sizeof buf - 1) {
    napi_throw_type_error(env, NULL, "statfs(path): a path shorter than 4095 bytes");
    return NULL;
  }
  statfs_job *j = calloc(1, sizeof *j);
  j->path = strdup(buf);
  napi_value promise, label;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "nodewarden.statfs", NAPI_AUTO_LENGTH, &label);
  if (napi_create_threadsafe_function(env, NULL, NULL, label, 0, 1, NULL, NULL, NULL, statfs_settle, &j->tsfn) != napi_ok) {
    free(j->path);
    free(j);
    napi_throw_error(env, NULL, "statfs: could not create its callback");
    return NULL;
  }
  napi_unref_threadsafe_function(env, j->tsfn);
  pthread_mutex_init(&j->lock, NULL);
  atomic_init(&j->refs, 2);
  j->env = env;
  // Registered after the thread-safe function's own hook, so it runs before it (hooks run in reverse).
  napi_add_env_cleanup_hook(env, statfs_env_closing, j);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 512 * 1024); // glibc takes static TLS out of it: ample room for it and the call
  pthread_t tid;
  int rc = pthread_create(&tid, &attr, statfs_thread, j);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    j->err = rc;
    napi_release_threadsafe_function(j->tsfn, napi_tsfn_release);
    napi_value code, message, error;
    napi_create_string_utf8(env, "EAGAIN", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, "statfs: no thread could be started", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, code, message, &error);
    napi_set_named_property(env, error, "code", code);
    napi_reject_deferred(env, j->deferred, error);
    napi_remove_env_cleanup_hook(env, statfs_env_closing, j);
    statfs_job_free(j);
  }
  return promise;
}

// ---- statAt and listStat: the tree index's calls (agent/host/tree-index.ts), synchronous ----
// The incremental refresh runs on its own worker thread and makes one call per directory instead of
// one lstat per entry: no Stats object per entry, and each name looked up relative to its directory's
// descriptor (one path walk per directory, not per entry). Each entry is ST_FIELDS numbers in a
// Float64Array: kind (0 gone or unreadable, 1 directory, 2 regular file, 3 other), device, inode,
// mtime and ctime in ms, allocated bytes (st_blocks * 512). Symlinks are never followed.
#define ST_FIELDS 6
#define ST_MASK (STATX_TYPE | STATX_INO | STATX_MTIME | STATX_CTIME | STATX_BLOCKS)

static void put_stat(double *o, int dirfd, const char *name) {
  struct statx stx;
  if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, ST_MASK, &stx) != 0) {
    memset(o, 0, ST_FIELDS * sizeof *o);
    return;
  }
  o[0] = S_ISDIR(stx.stx_mode) ? 1 : S_ISREG(stx.stx_mode) ? 2 : 3;
  o[1] = (double)makedev(stx.stx_dev_major, stx.stx_dev_minor);
  o[2] = (double)stx.stx_ino;
  o[3] = (double)stx.stx_mtime.tv_sec * 1e3 + stx.stx_mtime.tv_nsec / 1e6;
  o[4] = (double)stx.stx_ctime.tv_sec * 1e3 + stx.stx_ctime.tv_nsec / 1e6;
  o[5] = (double)stx.stx_blocks * 512;
}

static napi_value float64_array(napi_env env, const double *data, size_t n) {
  void *buf = NULL;
  napi_value ab, out;
  if (napi_create_arraybuffer(env, n * sizeof(double), &buf, &ab) != napi_ok) return NULL; // thrown (out of memory)
  if (n) memcpy(buf, data, n * sizeof(double));
  napi_create_typedarray(env, napi_float64_array, n, ab, 0, &out);
  return out;
}

// statAt(dir, names): the names' stats relative to dir (opened without following a symlink), or to
// the working directory when dir is null (names are then whole paths). null when dir cannot be opened.
static napi_value stat_at(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype t = napi_undefined;
  if (argc < 2 || napi_typeof(env, argv[0], &t) != napi_ok || (t != napi_string && t != napi_null)) {
    napi_throw_type_error(env, NULL, "statAt(dir | null, names)");
    return NULL;
  }
  char **names = NULL;
  uint32_t n = 0;
  int r = read_paths(env, argv[1], &names, &n);
  if (r == -1) napi_throw_type_error(env, NULL, "statAt(dir | null, names)");
  if (r != 0) return NULL;
  int fd = AT_FDCWD;
  if (t == napi_string) {
    char dir[4096];
    if (get_path(env, argv[0], dir, sizeof dir) != 0) {
      free_paths(names, n);
      return NULL;
    }
    fd = open_dir_long(dir);
    if (fd < 0) {
      free_paths(names, n);
      napi_get_null(env, &out);
      return out;
    }
  }
  double *o = malloc((n ? n : 1) * ST_FIELDS * sizeof *o);
  if (!o) {
    if (fd != AT_FDCWD) close(fd);
    free_paths(names, n);
    napi_throw_error(env, "NW_ERR_NOMEM", "statAt: out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) put_stat(o + (size_t)i * ST_FIELDS, fd, names[i]);
  if (fd != AT_FDCWD) close(fd);
  out = float64_array(env, o, (size_t)n * ST_FIELDS);
  free(o);
  free_paths(names, n);
  return out;
}

// 1 when s is well-formed UTF-8 (no overlong form, surrogate or code point past U+10FFFF).
static int utf8_valid(const unsigned char *s) {
  while (*s) {
    unsigned char b = *s;
    int len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (len == 0) return 0;
    for (int i = 1; i < len; i++)
      if ((s[i] & 0xc0) != 0x80) return 0;
    if ((b == 0xe0 && s[1] < 0xa0) || (b == 0xed && s[1] > 0x9f) || (b == 0xf0 && s[1] < 0x90) || (b == 0xf4 && s[1] > 0x8f)) return 0;
    s += len;
  }
  return 1;
}

// listStat(dir, skip, max?): { names, stats } of dir's entries ("." and ".." left out), or null when dir
// cannot be opened; when there are more than max entries, their names only (stats empty). A name in skip (a mount point: another filesystem, maybe a hung one) is listed
// with kind 0 and never looked up. A mount point's name that is not UTF-8 comes from mountinfo's parser
// with its odd bytes written "\xff" (collectors/common/text.ts) and cannot be compared byte for byte:
// while skip holds such a name, no entry whose name is not UTF-8 is looked up.
static napi_value list_stat(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char dir[4096];
  double max = -1; // no limit
  napi_valuetype mt = napi_undefined;
  if (argc < 2 || (argc > 2 && (napi_typeof(env, argv[2], &mt) != napi_ok || (mt != napi_number && mt != napi_undefined)))) {
    napi_throw_type_error(env, NULL, "listStat(dir, skip, max?)");
    return NULL;
  }
  if (mt == napi_number) napi_get_value_double(env, argv[2], &max);
  if (get_path(env, argv[0], dir, sizeof dir) != 0) return NULL;
  char **skip = NULL;
  uint32_t nskip = 0;
  int r = read_paths(env, argv[1], &skip, &nskip);
  if (r == -1) napi_throw_type_error(env, NULL, "listStat(dir, skip, max?)");
  if (r != 0) return NULL;
  dev_t dev;
  DIR *d = open_listing(dir, &dev);
  if (!d) {
    free_paths(skip, nskip);
    napi_get_null(env, &out);
    return out;
  }
  int fd = dirfd(d);
  int skip_odd = 0;
  for (uint32_t i = 0; i < nskip && !skip_odd; i++) skip_odd = strstr(skip[i], "\\x") != NULL;
  // The names first: a directory of more than max entries is over the caller's budget, and is not
  // looked up entry by entry (one statx each, an inode read each when cold) only to be dropped.
  size_t n = 0, cap = 64;
  char **names = malloc(cap * sizeof *names);
  double *o = NULL;
  int oom = !names;
  struct dirent *e;
  while (!oom && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0))) continue;
    if (n == cap) {
      char **more = realloc(names, cap * 2 * sizeof *names);
      if (!more) {
        oom = 1;
        break;
      }
      names = more;
      cap *= 2;
    }
    if (!(names[n] = strdup(e->d_name))) {
      oom = 1;
      break;
    }
    n++;
  }
  size_t stated = max >= 0 && (double)n > max ? 0 : n;
  if (!oom && !(o = malloc((stated ? stated : 1) * ST_FIELDS * sizeof *o))) oom = 1;
  for (size_t k = 0; !oom && k < stated; k++) {
    int skipped = skip_odd && !utf8_valid((const unsigned char *)names[k]);
    for (uint32_t i = 0; i < nskip && !skipped; i++) skipped = strcmp(skip[i], names[k]) == 0;
    if (skipped) memset(o + k * ST_FIELDS, 0, ST_FIELDS * sizeof *o);
    else put_stat(o + k * ST_FIELDS, fd, names[k]);
  }
  closedir(d);
  free_paths(skip, nskip);
  if (oom) {
    if (names) free_paths(names, n);
    free(o);
    napi_throw_error(env, "NW_ERR_NOMEM", "listStat: out of memory");
    return NULL;
  }
  napi_value arr, v;
  napi_create_array_with_length(env, n, &arr);
  for (size_t i = 0; i < n; i++) {
    napi_create_string_utf8(env, names[i], NAPI_AUTO_LENGTH, &v);
    napi_set_element(env, arr, (uint32_t)i, v);
    free(names[i]);
  }
  free(names);
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "names", arr);
  napi_set_named_property(env, out, "stats", float64_array(env, o, stated * ST_FIELDS));
  free(o);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"scanTree", NULL, scan_tree, NULL, NULL, NULL, napi_default, NULL},
      {"attrsOf", NULL, attrs_of, NULL, NULL, NULL, napi_default, NULL},
      {"duTree", NULL, du_tree, NULL, NULL, NULL, napi_default, NULL},
      {"statfs", NULL, statfs_async, NULL, NULL, NULL, napi_default, NULL},
      {"statAt", NULL, stat_at, NULL, NULL, NULL, napi_default, NULL},
      {"listStat", NULL, list_stat, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
