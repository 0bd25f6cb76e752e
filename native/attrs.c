// nodewarden's native helper: reads the immutable (i) and append-only (a) attributes with statx(2),
// which reports them without opening the file (lsattr opens every file and calls an ioctl).
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
#include <sys/sysmacros.h>
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

// ---- scanTree: the whole walk, on several threads, off the JavaScript thread ----

typedef struct {
  char *path;
} Dir;

typedef struct {
  char *path;
  int bits;
} Hit;

typedef struct {
  // input
  char **roots;
  size_t nroots;
  int threads;
  // shared queue of directories still to read
  pthread_mutex_t lock;
  pthread_cond_t cond;
  Dir *queue;
  size_t qlen, qcap;
  int busy; // threads reading a directory right now
  // results
  Hit *hits;
  size_t nhits, hcap;
  double entries;
  double errors;
  // napi
  napi_async_work work;
  napi_deferred deferred;
} Scan;

static void push_dir(Scan *s, char *path) {
  if (s->qlen == s->qcap) {
    s->qcap = s->qcap ? s->qcap * 2 : 256;
    s->queue = realloc(s->queue, s->qcap * sizeof *s->queue);
  }
  s->queue[s->qlen++].path = path;
}

static char *join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *out = malloc(a + b + 2);
  memcpy(out, dir, a);
  out[a] = '/';
  memcpy(out + a + 1, name, b + 1);
  return out;
}

// Reads one directory: entries counted, flagged ones recorded, subdirectories on the same filesystem
// queued. Returns nothing; errors are counted.
static void read_one(Scan *s, char *path, dev_t root_dev_unused) {
  (void)root_dev_unused;
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    pthread_mutex_lock(&s->lock);
    s->errors++;
    pthread_mutex_unlock(&s->lock);
    free(path);
    return;
  }
  struct stat self;
  if (fstat(fd, &self) != 0) self.st_dev = 0;
  DIR *dir = fdopendir(fd);
  if (!dir) {
    close(fd);
    free(path);
    return;
  }
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
      pthread_mutex_lock(&s->lock);
      if (s->nhits == s->hcap) {
        s->hcap = s->hcap ? s->hcap * 2 : 16;
        s->hits = realloc(s->hits, s->hcap * sizeof *s->hits);
      }
      s->hits[s->nhits].path = join(path, name);
      s->hits[s->nhits].bits = bits;
      s->nhits++;
      pthread_mutex_unlock(&s->lock);
    }
    if (S_ISDIR(stx.stx_mode) && makedev(stx.stx_dev_major, stx.stx_dev_minor) == self.st_dev) {
      subdirs[nsub++] = join(path, name);
      if (nsub == 64) {
        pthread_mutex_lock(&s->lock);
        for (int i = 0; i < nsub; i++) push_dir(s, subdirs[i]);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        nsub = 0;
      }
    }
  }
  closedir(dir);
  free(path);
  pthread_mutex_lock(&s->lock);
  s->entries += n;
  for (int i = 0; i < nsub; i++) push_dir(s, subdirs[i]);
  if (nsub) pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->lock);
}

static void *worker(void *arg) {
  Scan *s = arg;
  pthread_mutex_lock(&s->lock);
  for (;;) {
    while (s->qlen == 0 && s->busy > 0) pthread_cond_wait(&s->cond, &s->lock);
    if (s->qlen == 0) break; // nothing queued and nobody can queue more
    char *path = s->queue[--s->qlen].path;
    s->busy++;
    pthread_mutex_unlock(&s->lock);
    read_one(s, path, 0);
    pthread_mutex_lock(&s->lock);
    s->busy--;
    if (s->busy == 0 && s->qlen == 0) pthread_cond_broadcast(&s->cond);
  }
  pthread_mutex_unlock(&s->lock);
  return NULL;
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
    if (S_ISDIR(stx.stx_mode)) push_dir(s, strdup(s->roots[i]));
  }
  int extra = s->threads - 1;
  pthread_t tids[16];
  int started = 0;
  for (int i = 0; i < extra && i < 16; i++) {
    if (pthread_create(&tids[started], NULL, worker, s) == 0) started++;
  }
  worker(s);
  for (int i = 0; i < started; i++) pthread_join(tids[i], NULL);
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
  if (status == napi_ok) napi_resolve_deferred(env, s->deferred, result);
  else {
    napi_value msg, err;
    napi_create_string_utf8(env, "scanTree failed", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, s->deferred, err);
  }
  napi_delete_async_work(env, s->work);
  for (size_t i = 0; i < s->nroots; i++) free(s->roots[i]);
  free(s->roots);
  free(s->queue);
  free(s->hits);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->cond);
  free(s);
}

// scanTree(roots: string[], threads: number): Promise<{ entries, errors, flagged: [path, bits][] }>
// Walks every root with `threads` threads (one statx per entry), without crossing into other
// filesystems and without following symlinks.
static napi_value scan_tree(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_array = false;
  if (argc < 2 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array) {
    napi_throw_type_error(env, NULL, "scanTree(roots: string[], threads: number)");
    return NULL;
  }
  int32_t threads = 1;
  napi_get_value_int32(env, argv[1], &threads);
  if (threads < 1) threads = 1;
  if (threads > 16) threads = 16;
  uint32_t n = 0;
  napi_get_array_length(env, argv[0], &n);
  Scan *s = calloc(1, sizeof *s);
  s->threads = threads;
  s->roots = calloc(n ? n : 1, sizeof *s->roots);
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    char buf[4096];
    napi_get_element(env, argv[0], i, &el);
    if (get_path(env, el, buf, sizeof buf) != 0) {
      for (size_t j = 0; j < s->nroots; j++) free(s->roots[j]);
      free(s->roots);
      free(s);
      return NULL;
    }
    s->roots[s->nroots++] = strdup(buf);
  }
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->cond, NULL);
  napi_value promise, name;
  napi_create_promise(env, &s->deferred, &promise);
  napi_create_string_utf8(env, "nodewarden.scanTree", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, scan_execute, scan_complete, s, &s->work);
  napi_queue_async_work(env, s->work);
  return promise;
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"scanTree", NULL, scan_tree, NULL, NULL, NULL, napi_default, NULL},
      {"attrsOf", NULL, attrs_of, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
