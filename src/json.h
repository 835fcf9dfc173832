/* A small JSON reader and writer for C code that runs outside a Lua state
 * (the fake Claude server's threads). Lua code uses lua-cjson. */
#ifndef NYX_JSON_H
#define NYX_JSON_H

#include "util.h"

#include <stddef.h>

typedef enum {
    NYX_JNULL,
    NYX_JBOOL,
    NYX_JNUM,
    NYX_JSTR,
    NYX_JARR,
    NYX_JOBJ
} nyx_jtype;

typedef struct nyx_json nyx_json;
struct nyx_json {
    nyx_jtype type;
    int boolean;
    double num;
    const char *str; /* NUL-terminated, UTF-8; len bytes */
    size_t len;
    nyx_json **items;  /* array items or object values */
    const char **keys; /* object keys, in document order */
    size_t n;
};

typedef struct nyx_json_doc nyx_json_doc;

/* Parses text; NULL on error with err saying where and why. Values live
 * until nyx_json_free. Nesting deeper than 200 is refused. */
nyx_json_doc *nyx_json_parse(const char *text, size_t len, nyx_err *err);
const nyx_json *nyx_json_root(const nyx_json_doc *doc);
void nyx_json_free(nyx_json_doc *doc);

/* Member of an object (the last one with that key), or NULL. */
const nyx_json *nyx_json_get(const nyx_json *obj, const char *key);
/* Its string, or def when absent or not a string. */
const char *nyx_json_str(const nyx_json *obj, const char *key, const char *def);
double nyx_json_num(const nyx_json *obj, const char *key, double def);

/* The first byte from s (before end) that a JSON string cannot hold as it
 * is (below 0x20, '"', '\\'), or end. */
const char *nyx_json_plain(const char *s, const char *end);

/* Appends s (len bytes) as a JSON string literal, quotes included. */
int nyx_json_quote(nyx_buf *b, const char *s, size_t len);

/* Appends v as compact JSON with object keys sorted and members named
 * skip left out (NULL: none): a canonical form for hashing. */
int nyx_json_canon(nyx_buf *b, const nyx_json *v, const char *skip);

#endif
