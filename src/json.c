#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* Everything of one document comes from one arena, freed at once. */
typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
} chunk;

struct nyx_json_doc {
    chunk *chunks;
    nyx_json *root;
};

typedef struct parser {
    nyx_json_doc *doc;
    const char *start, *s, *end;
    int depth;
    nyx_err *err;
} parser;

static void *alloc(nyx_json_doc *doc, size_t size)
{
    size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) *
           sizeof(max_align_t);
    chunk *c = doc->chunks;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > 16384 ? size : 16384;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = doc->chunks;
        c->used = 0;
        c->cap = cap;
        doc->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += size;
    return p;
}

static nyx_json *fail(parser *p, const char *what)
{
    if (!p->err->msg[0])
        nyx_errf(p->err, "invalid JSON at byte %td: %s", p->s - p->start, what);
    return NULL;
}

static void skip_ws(parser *p)
{
    while (p->s < p->end &&
           (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r'))
        p->s++;
}

static nyx_json *node(parser *p, nyx_jtype type)
{
    nyx_json *v = alloc(p->doc, sizeof *v);
    if (!v)
        return fail(p, "out of memory");
    memset(v, 0, sizeof *v);
    v->type = type;
    return v;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* At the opening quote; decodes into an arena string. */
static const char *string(parser *p, size_t *len)
{
    const char *start = ++p->s, *q = start;
    while (q < p->end && *q != '"') /* the decoded form is never longer */
        q += *q == '\\' && q + 1 < p->end ? 2 : 1;
    if (q >= p->end)
        return fail(p, "unterminated string"), NULL;
    char *out = alloc(p->doc, (size_t)(q - start) + 1), *o = out;
    if (!out)
        return fail(p, "out of memory"), NULL;
    for (const char *s = start; s < q; s++) {
        if ((unsigned char)*s < 0x20)
            return fail(p, "control character in string"), NULL;
        if (*s != '\\') {
            *o++ = *s;
            continue;
        }
        char e = *++s;
        unsigned cp;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            *o++ = e;
            break;
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u':
            if (q - s < 5 || hex4(s + 1, &cp) < 0)
                return fail(p, "bad \\u escape"), NULL;
            s += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && q - s >= 7 && s[1] == '\\' &&
                s[2] == 'u') {
                unsigned lo;
                if (hex4(s + 3, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    s += 6;
                }
            }
            o += put_utf8(o, cp);
            break;
        default:
            return fail(p, "bad escape"), NULL;
        }
    }
    *o = '\0';
    *len = (size_t)(o - out);
    p->s = q + 1;
    return out;
}

static nyx_json *value(parser *p);

/* Items gathered in a temporary growable array, then copied to the arena. */
typedef struct list {
    nyx_json **v;
    const char **k;
    size_t n, cap;
} list;

static int list_add(list *l, const char *key, nyx_json *v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        nyx_json **nv = realloc(l->v, cap * sizeof *nv);
        if (!nv)
            return -1;
        l->v = nv;
        const char **nk = realloc(l->k, cap * sizeof *nk);
        if (!nk)
            return -1;
        l->k = nk;
        l->cap = cap;
    }
    l->v[l->n] = v;
    l->k[l->n++] = key;
    return 0;
}

static nyx_json *container(parser *p, int is_obj)
{
    nyx_json *v = node(p, is_obj ? NYX_JOBJ : NYX_JARR);
    list l = {0};
    char close = is_obj ? '}' : ']';
    if (!v || ++p->depth > 200)
        goto bad;
    p->s++;
    skip_ws(p);
    if (p->s < p->end && *p->s == close) {
        p->s++;
        goto done;
    }
    for (;;) {
        const char *key = NULL;
        size_t klen;
        skip_ws(p);
        if (is_obj) {
            if (p->s >= p->end || *p->s != '"' || !(key = string(p, &klen)))
                goto bad;
            skip_ws(p);
            if (p->s >= p->end || *p->s++ != ':')
                goto bad;
        }
        nyx_json *item = value(p);
        if (!item || list_add(&l, key, item) < 0)
            goto bad;
        skip_ws(p);
        if (p->s < p->end && *p->s == ',') {
            p->s++;
            continue;
        }
        if (p->s < p->end && *p->s == close) {
            p->s++;
            break;
        }
        goto bad;
    }
done:
    p->depth--;
    v->n = l.n;
    v->items = alloc(p->doc, l.n * sizeof *v->items + 1);
    v->keys = is_obj ? alloc(p->doc, l.n * sizeof *v->keys + 1) : NULL;
    if (!v->items || (is_obj && !v->keys))
        goto bad;
    if (l.n) {
        memcpy(v->items, l.v, l.n * sizeof *v->items);
        if (is_obj)
            memcpy(v->keys, l.k, l.n * sizeof *v->keys);
    }
    free(l.v);
    free(l.k);
    return v;
bad:
    free(l.v);
    free(l.k);
    return fail(p, p->depth > 200 ? "nested too deeply"
                   : is_obj       ? "bad object"
                                  : "bad array");
}

static nyx_json *literal(parser *p, const char *word, nyx_jtype type, int b)
{
    size_t n = strlen(word);
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, word, n) != 0)
        return fail(p, "unexpected character");
    p->s += n;
    nyx_json *v = node(p, type);
    if (v)
        v->boolean = b;
    return v;
}

static nyx_json *number(parser *p)
{
    char buf[64];
    const char *s = p->s;
    while (s < p->end && strchr("+-0123456789.eE", *s))
        s++;
    size_t n = (size_t)(s - p->s);
    if (n == 0 || n >= sizeof buf)
        return fail(p, "bad number");
    memcpy(buf, p->s, n);
    buf[n] = '\0';
    char *endp;
    double d = strtod(buf, &endp);
    if (*endp)
        return fail(p, "bad number");
    p->s = s;
    nyx_json *v = node(p, NYX_JNUM);
    if (v)
        v->num = d;
    return v;
}

static nyx_json *value(parser *p)
{
    skip_ws(p);
    if (p->s >= p->end)
        return fail(p, "unexpected end");
    switch (*p->s) {
    case '{':
        return container(p, 1);
    case '[':
        return container(p, 0);
    case '"': {
        nyx_json *v = node(p, NYX_JSTR);
        if (v && !(v->str = string(p, &v->len)))
            return NULL;
        return v;
    }
    case 't':
        return literal(p, "true", NYX_JBOOL, 1);
    case 'f':
        return literal(p, "false", NYX_JBOOL, 0);
    case 'n':
        return literal(p, "null", NYX_JNULL, 0);
    default:
        return number(p);
    }
}

nyx_json_doc *nyx_json_parse(const char *text, size_t len, nyx_err *err)
{
    nyx_err local;
    if (!err)
        err = &local;
    err->msg[0] = '\0';
    nyx_json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) {
        nyx_errf(err, "out of memory");
        return NULL;
    }
    parser p = {doc, text, text, text + len, 0, err};
    doc->root = value(&p);
    skip_ws(&p);
    if (doc->root && p.s != p.end)
        doc->root = fail(&p, "trailing characters");
    if (!doc->root) {
        nyx_json_free(doc);
        return NULL;
    }
    return doc;
}

const nyx_json *nyx_json_root(const nyx_json_doc *doc) { return doc->root; }

void nyx_json_free(nyx_json_doc *doc)
{
    if (!doc)
        return;
    for (chunk *c = doc->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(doc);
}

const nyx_json *nyx_json_get(const nyx_json *obj, const char *key)
{
    if (!obj || obj->type != NYX_JOBJ)
        return NULL;
    for (size_t i = obj->n; i-- > 0;)
        if (strcmp(obj->keys[i], key) == 0)
            return obj->items[i];
    return NULL;
}

const char *nyx_json_str(const nyx_json *obj, const char *key, const char *def)
{
    const nyx_json *v = nyx_json_get(obj, key);
    return v && v->type == NYX_JSTR ? v->str : def;
}

double nyx_json_num(const nyx_json *obj, const char *key, double def)
{
    const nyx_json *v = nyx_json_get(obj, key);
    return v && v->type == NYX_JNUM ? v->num : def;
}

/* Bytes a JSON string cannot hold as they are. */
static const unsigned char ESCAPE[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,         1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1 /* " */, ['\\'] = 1};

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

const char *nyx_json_plain(const char *s, const char *end)
{
#if defined(__SSE2__)
    /* sixteen bytes at a time (every x86-64 has SSE2): a byte below 0x20
     * is one whose unsigned minimum with 0x1f is itself */
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                  ctl = _mm_set1_epi8(0x1f);
    while (end - s >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)s);
        __m128i hit = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
            _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v));
        int m = _mm_movemask_epi8(hit);
        if (m)
            return s + __builtin_ctz((unsigned)m);
        s += 16;
    }
#endif
    /* eight bytes at a time: a byte below 0x20, or equal to '"' or '\\',
     * sets its high bit in t (the usual has-zero-byte test; exact as to
     * whether the word holds one), then the word goes byte by byte */
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *e = (const unsigned char *)end;
    while (e - p >= 8) {
        uint64_t v, q, bs;
        memcpy(&v, p, 8);
        q = v ^ (ones * '"');
        bs = v ^ (ones * '\\');
        if ((((v - ones * 0x20) & ~v) | ((q - ones) & ~q) |
             ((bs - ones) & ~bs)) &
            high)
            break;
        p += 8;
    }
    while (p < e && !ESCAPE[*p])
        p++;
    return (const char *)p;
}

int nyx_json_quote(nyx_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (nyx_buf_reserve(b, len + 2) < 0)
        return -1;
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    char *d = b->data + b->len;
    *d++ = '"';
    for (;;) {
        const unsigned char *q = /* a run that needs no escape */
            (const unsigned char *)nyx_json_plain((const char *)p,
                                                  (const char *)end);
        memcpy(d, p, (size_t)(q - p));
        d += q - p;
        p = q;
        if (p == end)
            break;
        b->len = (size_t)(d - b->data);
        if (nyx_buf_reserve(b, (size_t)(end - p) + 6 + 1) < 0)
            return -1;
        d = b->data + b->len;
        unsigned char c = *p++;
        *d++ = '\\';
        switch (c) {
        case '\n':
            *d++ = 'n';
            break;
        case '\r':
            *d++ = 'r';
            break;
        case '\t':
            *d++ = 't';
            break;
        case '"':
        case '\\':
            *d++ = (char)c;
            break;
        default:
            memcpy(d, "u00", 3);
            d[3] = hex[c >> 4];
            d[4] = hex[c & 15];
            d += 5;
        }
    }
    *d++ = '"';
    b->len = (size_t)(d - b->data);
    b->data[b->len] = '\0';
    return 0;
}

int nyx_json_canon(nyx_buf *b, const nyx_json *v, const char *skip)
{
    char num[64];
    switch (v->type) {
    case NYX_JNULL:
        return nyx_buf_add(b, "null", 4);
    case NYX_JBOOL:
        return v->boolean ? nyx_buf_add(b, "true", 4)
                          : nyx_buf_add(b, "false", 5);
    case NYX_JNUM:
        snprintf(num, sizeof num, "%.17g", v->num);
        return nyx_buf_add(b, num, strlen(num));
    case NYX_JSTR:
        return nyx_json_quote(b, v->str, v->len);
    case NYX_JARR:
        if (nyx_buf_add(b, "[", 1) < 0)
            return -1;
        for (size_t i = 0; i < v->n; i++)
            if ((i && nyx_buf_add(b, ",", 1) < 0) ||
                nyx_json_canon(b, v->items[i], skip) < 0)
                return -1;
        return nyx_buf_add(b, "]", 1);
    case NYX_JOBJ:
        break;
    }
    size_t *order = malloc((v->n + 1) * sizeof *order);
    if (!order)
        return -1;
    for (size_t i = 0; i < v->n; i++) { /* insertion sort: objects are small */
        size_t j = i;
        while (j > 0 && strcmp(v->keys[order[j - 1]], v->keys[i]) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    int rc = nyx_buf_add(b, "{", 1), first = 1;
    for (size_t i = 0; rc == 0 && i < v->n; i++) {
        size_t k = order[i];
        if (skip && strcmp(v->keys[k], skip) == 0)
            continue;
        rc = (!first && nyx_buf_add(b, ",", 1) < 0) ||
                     nyx_json_quote(b, v->keys[k], strlen(v->keys[k])) < 0 ||
                     nyx_buf_add(b, ":", 1) < 0 ||
                     nyx_json_canon(b, v->items[k], skip) < 0
                 ? -1
                 : 0;
        first = 0;
    }
    free(order);
    return rc == 0 ? nyx_buf_add(b, "}", 1) : -1;
}
