#pragma once
// libcurl is loaded on first use: curl_loader.c says why and how.

// Loads libcurl (libcurl.so.4, or the file COROPOOL_LIBCURL names) if it is not loaded yet, once
// for the process. Null when it is loaded; otherwise why it cannot be (the file, and dlopen's
// words or the function it lacks), the same every call.
extern "C" const char* coropool_libcurl_load_error(void);
