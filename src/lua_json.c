/* JSON to and from Lua values, for nyx's own use (responses, log rows,
 * query parameters). lua-cjson 2.1 stays the user's nyx.json; this one
 * keeps integers integers both ways, formats them without printf, and
 * parses straight into Lua values: the Claude client's hot path spent more
 * on cjson's number handling than on HTTP. */
#include "json.h"
#include "lua_json.h"
#include "lua_nyx.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 200

/* ---- encoding ------------------------------------------------------------ */

int nyx_json_add_integer(nyx_buf *b, lua_Integer v)
{
    char tmp[24], *p = tmp + sizeof tmp;
    lua_Unsigned u = v < 0 ? 0u - (lua_Unsigned)v : (lua_Unsigned)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    return nyx_buf_add(b, p, (size_t)(tmp + sizeof tmp - p));
}

/* A float with at most 15 significant digits in fixed notation (costs and
 * milliseconds nearly always are), written as %.15g would write it without
 * printf: m / 10^n is the double nearest the decimal m * 10^-n, which is
 * what strtod reads back, so when it equals d the digits are exact; the
 * smallest such n is %.15g's trailing-zero-free form. 0: not such a one. */
static size_t fixed_float(char *out, double d)
{
    static const double p10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    double a = d < 0 ? -d : d;
    if (!(a >= 1e-4 && a < 1e15))
        return 0; /* %.15g turns to exponents, or 0 and -0 */
    for (int n = 0; n < 16; n++) {
        double scaled = a * p10[n];
        if (scaled >= 1e15)
            return 0;
        long long m = llround(scaled);
        if ((double)m / p10[n] != a)
            continue;
        char digits[24], *p = digits + sizeof digits, *o = out;
        int nd = 0;
        do
            *--p = (char)('0' + m % 10), nd++;
        while (m /= 10);
        if (d < 0)
            *o++ = '-';
        if (nd <= n) { /* 0.000ddd */
            memcpy(o, "0.", 2);
            memset(o + 2, '0', (size_t)(n - nd));
            o += 2 + n - nd;
        } else { /* the integer part, then the point if there are decimals */
            memcpy(o, p, (size_t)(nd - n));
            o += nd - n;
            p += nd - n;
            if (n)
                *o++ = '.';
        }
        memcpy(o, p, (size_t)(nd < n ? nd : n));
        return (size_t)(o - out) + (size_t)(nd < n ? nd : n);
    }
    return 0;
}

int nyx_json_add_number(nyx_buf *b, double d)
{
    char tmp[32];
    size_t fixed = fixed_float(tmp, d);
    if (fixed)
        return nyx_buf_add(b, tmp, fixed);
    /* the shortest of %.15g and %.17g that reads back as the same double */
    int n = snprintf(tmp, sizeof tmp, "%.15g", d);
    if (strtod(tmp, NULL) != d)
        n = snprintf(tmp, sizeof tmp, "%.17g", d);
    return nyx_buf_add(b, tmp, (size_t)n);
}

/* 1..n with nothing else: an array of n (0 for an empty table, which is
 * written as an object, as lua-cjson does). -1: not an array. */
static lua_Integer array_length(lua_State *L, int idx)
{
    lua_Integer n = 0, count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return -1;
        }
        lua_Integer k = lua_tointeger(L, -1);
        n = k > n ? k : n;
        count++;
    }
    return n == count ? n : -1;
}

static int encode(lua_State *L, int idx, nyx_buf *b, int depth);

static int encode_table(lua_State *L, int idx, nyx_buf *b, int depth)
{
    if (depth > MAX_DEPTH)
        return luaL_error(L, "cannot encode JSON: tables nested too deeply "
                             "(or a cycle)");
    luaL_checkstack(L, 4, "JSON encoding");
    lua_Integer n = array_length(L, idx);
    if (n > 0) {
        nyx_buf_add(b, "[", 1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1)
                nyx_buf_add(b, ",", 1);
            lua_rawgeti(L, idx, i);
            encode(L, lua_gettop(L), b, depth + 1);
            lua_pop(L, 1);
        }
        return nyx_buf_add(b, "]", 1);
    }
    nyx_buf_add(b, "{", 1);
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t klen;
        const char *key;
        int copied = 0;
        if (lua_type(L, -2) == LUA_TSTRING) {
            key = lua_tolstring(L, -2, &klen);
        } else if (lua_type(L, -2) == LUA_TNUMBER) {
            lua_pushvalue(L, -2); /* a copy: tostring on the key would */
            key = lua_tolstring(L, -1, &klen); /* confuse lua_next */
            lua_insert(L, -2);
            copied = 1;
        } else {
            return luaL_error(L, "cannot encode JSON: a %s key",
                              luaL_typename(L, -2));
        }
        if (!first)
            nyx_buf_add(b, ",", 1);
        first = 0;
        nyx_json_quote(b, key, klen);
        nyx_buf_add(b, ":", 1);
        encode(L, lua_gettop(L), b, depth + 1);
        lua_pop(L, 1 + copied);
    }
    return nyx_buf_add(b, "}", 1);
}

static int encode(lua_State *L, int idx, nyx_buf *b, int depth)
{
    size_t len;
    const char *s;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return nyx_buf_add(b, "null", 4);
    case LUA_TLIGHTUSERDATA: /* cjson.null */
        return nyx_buf_add(b, "null", 4);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? nyx_buf_add(b, "true", 4)
                                     : nyx_buf_add(b, "false", 5);
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return nyx_json_add_integer(b, lua_tointeger(L, idx));
        if (!isfinite(lua_tonumber(L, idx)))
            return luaL_error(L,
                              "cannot encode JSON: %f is not a JSON "
                              "number",
                              lua_tonumber(L, idx));
        return nyx_json_add_number(b, lua_tonumber(L, idx));
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        return nyx_json_quote(b, s, len);
    case LUA_TTABLE:
        if (lua_getmetatable(L, idx)) { /* JSON text kept as it is? */
            luaL_getmetatable(L, NYX_JSON_RAW);
            int raw = lua_rawequal(L, -1, -2);
            lua_pop(L, 2);
            if (raw) {
                lua_rawgeti(L, idx, 1);
                s = lua_tolstring(L, -1, &len);
                int r = s ? nyx_buf_add(b, s, len) : nyx_buf_add(b, "null", 4);
                lua_pop(L, 1);
                return r;
            }
        }
        return encode_table(L, idx, b, depth);
    default:
        return luaL_error(L, "cannot encode JSON: a %s value",
                          luaL_typename(L, idx));
    }
}

static int buf_gc(lua_State *L)
{
    nyx_buf_free(lua_touserdata(L, 1));
    return 0;
}

nyx_buf *nyx_json_push_buf(lua_State *L)
{
    nyx_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    nyx_gc_metatable(L, "nyx.json.buf", buf_gc);
    luaL_setmetatable(L, "nyx.json.buf"); /* freed even if encoding raises */
    return b;
}

int nyx_json_add_value(lua_State *L, int idx, nyx_buf *b)
{
    return encode(L, lua_absindex(L, idx), b, 1);
}

void nyx_json_encode(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    nyx_buf *b = nyx_json_push_buf(L);
    encode(L, idx, b, 0);
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    nyx_buf_free(b);
    lua_remove(L, -2);
}

void nyx_json_push_raw(lua_State *L, const char *s, size_t len)
{
    lua_createtable(L, 1, 0);
    lua_pushlstring(L, s, len);
    lua_rawseti(L, -2, 1);
    luaL_newmetatable(L, NYX_JSON_RAW); /* made by nyx.core, or here */
    lua_setmetatable(L, -2);
}

#if defined(__SSE2__)
#include <emmintrin.h>
#else
/* Whether any of the eight bytes in v is a quote or a backslash (the
 * has-zero-byte test of nyx_json_plain). */
static int array_special8(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t q = v ^ (ones * '"'), bs = v ^ (ones * '\\');
    return ((((q - ones) & ~q) | ((bs - ones) & ~bs)) & high) != 0;
}
#endif

/* Appends s as a quoted element of a PostgreSQL array literal, room made
 * for every byte escaped. JSON text has a quote every few bytes, and a
 * backslash before each newline it holds. With SSE2 (every x86-64 has
 * it) sixteen bytes at a time: stored as they are, then, when one of them
 * is a quote or a backslash, kept up to it, it escaped, and the next
 * sixteen read from the byte after it. Elsewhere eight at a time: stored
 * as they are when none needs a backslash, else one at a time. */
int nyx_pg_array_quote(nyx_buf *b, const char *s, size_t len)
{
    if (nyx_buf_reserve(b, 2 * len + 2) < 0)
        return -1;
    char *o = b->data + b->len;
    const char *end = s + len;
    *o++ = '"';
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    /* a store of sixteen stays in the room made: there are 2 (end - s) + 1
     * bytes of it left at o, and end - s >= 16 */
    while (end - s >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)s);
        _mm_storeu_si128((__m128i *)o, v);
        int m = _mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)));
        if (!m) {
            o += 16;
            s += 16;
            continue;
        }
        int k = __builtin_ctz((unsigned)m);
        o += k;
        *o++ = '\\';
        *o++ = s[k];
        s += k + 1;
    }
#else
    while (end - s >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        if (!array_special8(v)) {
            memcpy(o, &v, 8);
            o += 8;
            s += 8;
            continue;
        }
        for (int i = 0; i < 8; i++) {
            char c = s[i];
            if (c == '"' || c == '\\')
                *o++ = '\\';
            *o++ = c;
        }
        s += 8;
    }
#endif
    while (s < end) {
        char c = *s++;
        if (c == '"' || c == '\\')
            *o++ = '\\';
        *o++ = c;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return 0;
}

/* ---- decoding ------------------------------------------------------------ */

typedef struct dec {
    lua_State *L;
    int null; /* stack index of the value for null, 0: nil */
    const char *s, *p, *end;
    nyx_buf tmp; /* for strings with escapes */
    const char *error;
} dec;

static void ws(dec *d)
{
    while (d->p < d->end &&
           (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t'))
        d->p++;
}

static int fail(dec *d, const char *why)
{
    if (!d->error)
        d->error = why;
    return -1;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v = v * 16 + (unsigned)(c >= '0' && c <= '9'   ? c - '0'
                                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                       : 99);
        if (v >= 0x10000)
            return -1;
    }
    *out = v;
    return 0;
}

static void utf8(nyx_buf *b, unsigned cp)
{
    char o[4];
    size_t n;
    if (cp < 0x80)
        o[0] = (char)cp, n = 1;
    else if (cp < 0x800)
        o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 0x3F)),
        o[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 0x3F)),
        o[2] = (char)(0x80 | (cp >> 6 & 0x3F)),
        o[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    nyx_buf_add(b, o, n);
}

/* At the opening quote; pushes the string. */
static int string(dec *d)
{
    const char *start = ++d->p, *p = nyx_json_plain(start, d->end);
    if (p < d->end && *p == '"') { /* no escapes: the common case */
        lua_pushlstring(d->L, start, (size_t)(p - start));
        d->p = p + 1;
        return 0;
    }
    d->tmp.len = 0;
    nyx_buf_add(&d->tmp, start, (size_t)(p - start));
    while (p < d->end && *p != '"') {
        if ((unsigned char)*p < 0x20)
            return fail(d, "control character in a string");
        if (*p != '\\') {
            nyx_buf_add(&d->tmp, p++, 1);
            continue;
        }
        if (++p >= d->end)
            break;
        unsigned cp;
        char c = *p++;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            nyx_buf_add(&d->tmp, &c, 1);
            break;
        case 'b':
            nyx_buf_add(&d->tmp, "\b", 1);
            break;
        case 'f':
            nyx_buf_add(&d->tmp, "\f", 1);
            break;
        case 'n':
            nyx_buf_add(&d->tmp, "\n", 1);
            break;
        case 'r':
            nyx_buf_add(&d->tmp, "\r", 1);
            break;
        case 't':
            nyx_buf_add(&d->tmp, "\t", 1);
            break;
        case 'u':
            if (d->end - p < 4 || hex4(p, &cp) < 0)
                return fail(d, "bad \\u escape");
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && d->end - p >= 6 &&
                p[0] == '\\' && p[1] == 'u') {
                unsigned lo;
                if (hex4(p + 2, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            utf8(&d->tmp, cp);
            break;
        default:
            return fail(d, "bad escape in a string");
        }
    }
    if (p >= d->end)
        return fail(d, "unterminated string");
    d->p = p + 1;
    lua_pushlstring(d->L, d->tmp.data ? d->tmp.data : "", d->tmp.len);
    return 0;
}

static int number(dec *d)
{
    const char *p = d->p;
    int neg = p < d->end && *p == '-';
    p += neg;
    /* an integer that fits lua_Integer stays one; anything else is a float */
    lua_Unsigned u = 0, limit = neg ? (lua_Unsigned)LUA_MAXINTEGER + 1
                                    : (lua_Unsigned)LUA_MAXINTEGER;
    int digits = 0, fits = 1;
    while (p < d->end && *p >= '0' && *p <= '9') {
        unsigned dgt = (unsigned)(*p++ - '0');
        if (u > (limit - dgt) / 10)
            fits = 0;
        else
            u = u * 10 + dgt;
        digits++;
    }
    if (digits && fits && (p >= d->end || !strchr(".eE", *p))) {
        lua_pushinteger(d->L, neg ? (lua_Integer)(0u - u) : (lua_Integer)u);
        d->p = p;
        return 0;
    }
    char *endp;
    double v = strtod(d->p, &endp); /* fractions, exponents, huge numbers */
    if (endp == d->p || endp > d->end)
        return fail(d, "bad number");
    d->p = endp;
    lua_pushnumber(d->L, v);
    return 0;
}

static int value(dec *d, int depth);

/* Members are held on the stack until the container closes (or PENDING
 * of them came), then the table is made at its size: a table grown one
 * member at a time is rehashed at 1, 2, 4, 8 ... members, and that was
 * most of what decoding a response cost. */
#define PENDING 32

/* Makes the table of the n members above base + 1 (twice the room when
 * more follow) and puts it at base + 1. stack: base + 1 (the table) */
static void make_table(lua_State *L, int base, int n, int is_obj, int more)
{
    int size = more ? 2 * n : n;
    lua_createtable(L, is_obj ? 0 : size, is_obj ? size : 0);
    int t = lua_gettop(L);
    for (int k = 0; k < n; k++) {
        if (is_obj) {
            lua_pushvalue(L, base + 2 + 2 * k);
            lua_pushvalue(L, base + 3 + 2 * k);
            lua_rawset(L, t);
        } else {
            lua_pushvalue(L, base + 2 + k);
            lua_rawseti(L, t, k + 1);
        }
    }
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
}

static int container(dec *d, int depth, int is_obj)
{
    lua_State *L = d->L;
    if (depth > MAX_DEPTH)
        return fail(d, "nested too deeply");
    if (!lua_checkstack(L, 2 * PENDING + 4))
        return fail(d, "nested too deeply");
    char close = is_obj ? '}' : ']';
    d->p++;
    ws(d);
    if (d->p < d->end && *d->p == close) {
        d->p++;
        lua_newtable(L);
        return 0;
    }
    int base = lua_gettop(L), pending = 0, made = 0;
    lua_pushnil(L); /* where the table goes */
    for (lua_Integer i = 1;; i++) {
        ws(d);
        if (is_obj) {
            if (d->p >= d->end || *d->p != '"' || string(d) < 0)
                return fail(d, "expected a string key");
            ws(d);
            if (d->p >= d->end || *d->p++ != ':')
                return fail(d, "expected ':'");
        }
        if (value(d, depth + 1) < 0)
            return -1;
        if (made && is_obj)
            lua_rawset(L, base + 1);
        else if (made)
            lua_rawseti(L, base + 1, i);
        else if (++pending == PENDING)
            make_table(L, base, pending, is_obj, made = 1);
        ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == close) {
            d->p++;
            if (!made)
                make_table(L, base, pending, is_obj, 0);
            return 0;
        }
        return fail(d, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int literal(dec *d, const char *word, size_t n)
{
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
        return fail(d, "unexpected character");
    d->p += n;
    return 0;
}

static int value(dec *d, int depth)
{
    ws(d);
    if (d->p >= d->end)
        return fail(d, "unexpected end");
    switch (*d->p) {
    case '{':
        return container(d, depth, 1);
    case '[':
        return container(d, depth, 0);
    case '"':
        return string(d);
    case 't':
        if (literal(d, "true", 4) < 0)
            return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (literal(d, "false", 5) < 0)
            return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (literal(d, "null", 4) < 0)
            return -1;
        if (d->null)
            lua_pushvalue(d->L, d->null);
        else
            lua_pushnil(d->L); /* absent, as a NULL column is */
        return 0;
    default:
        return number(d);
    }
}

static int decode_here(lua_State *L, const char *s, size_t len, int null)
{
    int top = lua_gettop(L);
    dec d = {L, null ? lua_absindex(L, null) : 0, s, s, s + len, {0}, NULL};
    int rc = value(&d, 0);
    ws(&d);
    if (rc == 0 && d.p != d.end)
        rc = fail(&d, "trailing characters");
    nyx_buf_free(&d.tmp);
    if (rc < 0) {
        lua_settop(L, top);
        lua_pushnil(L);
        lua_pushfstring(L, "invalid JSON at byte %d: %s", (int)(d.p - s),
                        d.error);
        return 2;
    }
    return 1;
}

/* Documents are decoded on a thread of their own, kept in the registry,
 * and the value is moved to the caller's. Decoding needs a stack slice per
 * level of nesting (2 * PENDING + 4 slots): on an agent's coroutine, deep
 * in its calls, it doubled the stack (a Messages API response took it from
 * 160 slots to 320), and Lua's generational collector never shrinks a
 * stack again, so every waiting agent kept 5.2 KB of stack instead of
 * 2.6. This thread grows once. */
static const char DECODER = 0; /* its registry key: the address */

typedef struct decode_args {
    const char *s;
    size_t len;
} decode_args;

static int decode_on_thread(lua_State *S)
{
    decode_args *a = lua_touserdata(S, 1);
    return decode_here(S, a->s, a->len, lua_gettop(S) > 1 ? 2 : 0);
}

int nyx_json_decode(lua_State *L, const char *s, size_t len, int null)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &DECODER) != LUA_TTHREAD) {
        lua_pop(L, 1);
        lua_sethook(lua_newthread(L), NULL, 0, 0); /* not its maker's */
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &DECODER);
    }
    lua_State *S = lua_tothread(L, -1);
    lua_pop(L, 1); /* the registry keeps it */
    if (S == L || lua_status(S) != LUA_OK || lua_gettop(S) != 0)
        return decode_here(L, s, len, null); /* in use (a finalizer...) */
    decode_args a = {s, len};
    lua_pushcfunction(S, decode_on_thread);
    lua_pushlightuserdata(S, &a);
    if (null) {
        lua_pushvalue(L, null);
        lua_xmove(L, S, 1);
    }
    int status = lua_pcall(S, null ? 2 : 1, LUA_MULTRET, 0);
    int n = lua_gettop(S);
    luaL_checkstack(L, n, "JSON decoding");
    lua_xmove(S, L, n);
    if (status != LUA_OK)
        return lua_error(L); /* out of memory: raised where it was called */
    return n;
}
