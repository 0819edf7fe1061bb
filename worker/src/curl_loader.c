/* libcurl, loaded the first time it is used instead of when the program starts. Linked the usual
 * way, libcurl and the 34 libraries it brings (TLS, SSH, LDAP, Kerberos, IDN, ...) were mapped
 * and relocated at every start of every program built on coropool, and every fork of it carried
 * their mappings: about 4 ms of CPU and 520 page faults per start here, a third of what a short
 * `coropool run` took, for a library that `run` and most pools never call.
 *
 * This file defines the libcurl functions coropool calls, each handing its call on to the real
 * one, found with dlsym in libcurl.so.4 (or the file COROPOOL_LIBCURL names), dlopen'ed on the
 * first call. The program is linked against no libcurl: these definitions are what the linker
 * finds for the calls in http.cpp and the CLI. curl's variadic setters take one argument whose
 * type the option's number gives (curl.h's CURLOPTTYPE_* ranges), which is how curl itself reads
 * it; each is passed on as that type. C, not C++: there an enum as the last named parameter of a
 * variadic function is well defined. */
#define CURL_DISABLE_TYPECHECK /* these are the definitions, not calls to check */
#include <curl/curl.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char* coropool_libcurl_load_error(void);

/* The forwarders are not exported from the program or library they are linked into: were they,
 * a libcurl loaded there for other reasons would have its own calls to its API routed through
 * them. (CURL_EXTERN declares curl's functions with the default visibility, which a definition
 * may narrow.) */
#define COROPOOL_HIDDEN __attribute__((visibility("hidden")))

/* What was found in libcurl; `lib` null (and `error` says why) when it could not be loaded. */
struct CurlApi {
  void* lib;
  char error[512];
  CURLcode (*global_init)(long);
  void (*free)(void*);
  CURL* (*easy_init)(void);
  void (*easy_cleanup)(CURL*);
  void (*easy_reset)(CURL*);
  CURLcode (*easy_setopt)(CURL*, CURLoption, ...);
  CURLcode (*easy_getinfo)(CURL*, CURLINFO, ...);
  const char* (*easy_strerror)(CURLcode);
  CURLHcode (*easy_header)(CURL*, const char*, size_t, unsigned int, int, struct curl_header**);
  CURLM* (*multi_init)(void);
  CURLMcode (*multi_cleanup)(CURLM*);
  CURLMcode (*multi_setopt)(CURLM*, CURLMoption, ...);
  CURLMcode (*multi_add_handle)(CURLM*, CURL*);
  CURLMcode (*multi_remove_handle)(CURLM*, CURL*);
  CURLMcode (*multi_socket_action)(CURLM*, curl_socket_t, int, int*);
  CURLMsg* (*multi_info_read)(CURLM*, int*);
  const char* (*multi_strerror)(CURLMcode);
  CURLSH* (*share_init)(void);
  CURLSHcode (*share_cleanup)(CURLSH*);
  CURLSHcode (*share_setopt)(CURLSH*, CURLSHoption, ...);
  struct curl_slist* (*slist_append)(struct curl_slist*, const char*);
  void (*slist_free_all)(struct curl_slist*);
  CURLU* (*url)(void);
  void (*url_cleanup)(CURLU*);
  CURLUcode (*url_get)(CURLU*, CURLUPart, char**, unsigned int);
  CURLUcode (*url_set)(CURLU*, CURLUPart, const char*, unsigned int);
};
static struct CurlApi api;

/* Looks `name` up in `file` into *slot, a function pointer, stored through its bytes (dlsym's
 * void * cannot be assigned to one in ISO C). False, with api.error set, when it is missing. */
static int find(void* slot, const char* name, const char* file) {
  void* p = dlsym(api.lib, name);
  if (!p) {
    snprintf(api.error, sizeof api.error, "cannot use %s: it has no %s", file, name);
    return 0;
  }
  memcpy(slot, (const void*)&p, sizeof p);
  return 1;
}

static void load(void) {
  const char* file = getenv("COROPOOL_LIBCURL");
  if (!file || !*file) file = "libcurl.so.4";
  api.lib = dlopen(file, RTLD_NOW | RTLD_LOCAL);
  if (!api.lib) {
    const char* why = dlerror();
    snprintf(api.error, sizeof api.error,
             "cannot load %s (HTTP requests need libcurl 4, Debian's package libcurl4): %s", file,
             why ? why : "dlopen failed");
    return;
  }
  static const struct {
    size_t offset;
    const char* name;
  } wanted[] = {
      {offsetof(struct CurlApi, global_init), "curl_global_init"},
      {offsetof(struct CurlApi, free), "curl_free"},
      {offsetof(struct CurlApi, easy_init), "curl_easy_init"},
      {offsetof(struct CurlApi, easy_cleanup), "curl_easy_cleanup"},
      {offsetof(struct CurlApi, easy_reset), "curl_easy_reset"},
      {offsetof(struct CurlApi, easy_setopt), "curl_easy_setopt"},
      {offsetof(struct CurlApi, easy_getinfo), "curl_easy_getinfo"},
      {offsetof(struct CurlApi, easy_strerror), "curl_easy_strerror"},
      {offsetof(struct CurlApi, easy_header), "curl_easy_header"},
      {offsetof(struct CurlApi, multi_init), "curl_multi_init"},
      {offsetof(struct CurlApi, multi_cleanup), "curl_multi_cleanup"},
      {offsetof(struct CurlApi, multi_setopt), "curl_multi_setopt"},
      {offsetof(struct CurlApi, multi_add_handle), "curl_multi_add_handle"},
      {offsetof(struct CurlApi, multi_remove_handle), "curl_multi_remove_handle"},
      {offsetof(struct CurlApi, multi_socket_action), "curl_multi_socket_action"},
      {offsetof(struct CurlApi, multi_info_read), "curl_multi_info_read"},
      {offsetof(struct CurlApi, multi_strerror), "curl_multi_strerror"},
      {offsetof(struct CurlApi, share_init), "curl_share_init"},
      {offsetof(struct CurlApi, share_cleanup), "curl_share_cleanup"},
      {offsetof(struct CurlApi, share_setopt), "curl_share_setopt"},
      {offsetof(struct CurlApi, slist_append), "curl_slist_append"},
      {offsetof(struct CurlApi, slist_free_all), "curl_slist_free_all"},
      {offsetof(struct CurlApi, url), "curl_url"},
      {offsetof(struct CurlApi, url_cleanup), "curl_url_cleanup"},
      {offsetof(struct CurlApi, url_get), "curl_url_get"},
      {offsetof(struct CurlApi, url_set), "curl_url_set"},
  };
  for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; ++i) {
    if (!find((char*)&api + wanted[i].offset, wanted[i].name, file)) {
      dlclose(api.lib);
      api.lib = NULL;
      return;
    }
  }
}

/* Loads libcurl once (any thread may be first). Null when loaded, else why it is not. */
COROPOOL_HIDDEN const char* coropool_libcurl_load_error(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, load);
  return api.lib ? NULL : api.error;
}

/* For the calls that have no way to report a failure: reached only when a program calls curl
 * after coropool::worker::load_libcurl() (or an HttpClient) told it that libcurl is missing. */
static void need(void) {
  const char* why = coropool_libcurl_load_error();
  if (why) {
    fprintf(stderr, "coropool: %s\n", why);
    abort();
  }
}

/* How curl reads the one argument after a setter's option: by the option's number, in
 * curl.h's CURLOPTTYPE_* ranges, which easy and multi options share. */
enum ArgKind { ARG_LONG, ARG_OFF_T, ARG_POINTER };
static enum ArgKind arg_kind_of(long option) {
  if (option < CURLOPTTYPE_OBJECTPOINT) return ARG_LONG;
  if (option >= CURLOPTTYPE_OFF_T && option < CURLOPTTYPE_BLOB) return ARG_OFF_T;
  return ARG_POINTER; /* object, string, list and function pointers, struct curl_blob * */
}

COROPOOL_HIDDEN CURLcode curl_global_init(long flags) {
  return coropool_libcurl_load_error() ? CURLE_FAILED_INIT : api.global_init(flags);
}
COROPOOL_HIDDEN void curl_free(void* p) {
  need();
  api.free(p);
}

COROPOOL_HIDDEN CURL* curl_easy_init(void) {
  need();
  return api.easy_init();
}
COROPOOL_HIDDEN void curl_easy_cleanup(CURL* e) {
  need();
  api.easy_cleanup(e);
}
COROPOOL_HIDDEN void curl_easy_reset(CURL* e) {
  need();
  api.easy_reset(e);
}
COROPOOL_HIDDEN CURLcode curl_easy_setopt(CURL* e, CURLoption option, ...) {
  need();
  va_list ap;
  va_start(ap, option);
  CURLcode r;
  enum ArgKind kind = arg_kind_of(option);
  if (kind == ARG_LONG) /* NOLINTNEXTLINE(bugprone-branch-clone): long and curl_off_t are one type on LP64 only */
    r = api.easy_setopt(e, option, va_arg(ap, long));
  else if (kind == ARG_OFF_T)
    r = api.easy_setopt(e, option, va_arg(ap, curl_off_t));
  else
    r = api.easy_setopt(e, option, va_arg(ap, void*));
  va_end(ap);
  return r;
}
COROPOOL_HIDDEN CURLcode curl_easy_getinfo(CURL* e, CURLINFO info, ...) {
  need();
  va_list ap;
  va_start(ap, info);
  void* out = va_arg(ap, void*); /* every CURLINFO takes a pointer to where the answer goes */
  va_end(ap);
  return api.easy_getinfo(e, info, out);
}
COROPOOL_HIDDEN const char* curl_easy_strerror(CURLcode code) {
  need();
  return api.easy_strerror(code);
}
COROPOOL_HIDDEN CURLHcode curl_easy_header(CURL* e, const char* name, size_t index, unsigned int origin, int request,
                                           struct curl_header** out) {
  need();
  return api.easy_header(e, name, index, origin, request, out);
}

COROPOOL_HIDDEN CURLM* curl_multi_init(void) {
  need();
  return api.multi_init();
}
COROPOOL_HIDDEN CURLMcode curl_multi_cleanup(CURLM* m) {
  need();
  return api.multi_cleanup(m);
}
COROPOOL_HIDDEN CURLMcode curl_multi_setopt(CURLM* m, CURLMoption option, ...) {
  need();
  va_list ap;
  va_start(ap, option);
  CURLMcode r;
  enum ArgKind kind = arg_kind_of(option);
  if (kind == ARG_LONG) /* NOLINTNEXTLINE(bugprone-branch-clone): long and curl_off_t are one type on LP64 only */
    r = api.multi_setopt(m, option, va_arg(ap, long));
  else if (kind == ARG_OFF_T)
    r = api.multi_setopt(m, option, va_arg(ap, curl_off_t));
  else
    r = api.multi_setopt(m, option, va_arg(ap, void*));
  va_end(ap);
  return r;
}
COROPOOL_HIDDEN CURLMcode curl_multi_add_handle(CURLM* m, CURL* e) {
  need();
  return api.multi_add_handle(m, e);
}
COROPOOL_HIDDEN CURLMcode curl_multi_remove_handle(CURLM* m, CURL* e) {
  need();
  return api.multi_remove_handle(m, e);
}
/* The two calls of the hot path skip need(): they only take a multi that curl_multi_init made. */
COROPOOL_HIDDEN CURLMcode curl_multi_socket_action(CURLM* m, curl_socket_t s, int ev_bitmask, int* running) {
  return api.multi_socket_action(m, s, ev_bitmask, running);
}
COROPOOL_HIDDEN CURLMsg* curl_multi_info_read(CURLM* m, int* left) { return api.multi_info_read(m, left); }
COROPOOL_HIDDEN const char* curl_multi_strerror(CURLMcode code) {
  need();
  return api.multi_strerror(code);
}

COROPOOL_HIDDEN CURLSH* curl_share_init(void) {
  need();
  return api.share_init();
}
COROPOOL_HIDDEN CURLSHcode curl_share_cleanup(CURLSH* s) {
  need();
  return api.share_cleanup(s);
}
COROPOOL_HIDDEN CURLSHcode curl_share_setopt(CURLSH* s, CURLSHoption option, ...) {
  need();
  va_list ap;
  va_start(ap, option);
  CURLSHcode r;
  /* curl reads CURLSHOPT_SHARE and _UNSHARE as an int (a curl_lock_data), the rest as pointers. */
  /* NOLINTNEXTLINE(bugprone-branch-clone): the branches read different types */
  if (option == CURLSHOPT_SHARE || option == CURLSHOPT_UNSHARE)
    r = api.share_setopt(s, option, va_arg(ap, int));
  else
    r = api.share_setopt(s, option, va_arg(ap, void*));
  va_end(ap);
  return r;
}

COROPOOL_HIDDEN struct curl_slist* curl_slist_append(struct curl_slist* list, const char* data) {
  need();
  return api.slist_append(list, data);
}
COROPOOL_HIDDEN void curl_slist_free_all(struct curl_slist* list) {
  need();
  api.slist_free_all(list);
}

COROPOOL_HIDDEN CURLU* curl_url(void) {
  need();
  return api.url();
}
COROPOOL_HIDDEN void curl_url_cleanup(CURLU* u) {
  need();
  api.url_cleanup(u);
}
COROPOOL_HIDDEN CURLUcode curl_url_get(CURLU* u, CURLUPart what, char** part, unsigned int flags) {
  need();
  return api.url_get(u, what, part, flags);
}
COROPOOL_HIDDEN CURLUcode curl_url_set(CURLU* u, CURLUPart what, const char* part, unsigned int flags) {
  need();
  return api.url_set(u, what, part, flags);
}
