#include "sqlsplit.h"

#include <ctype.h>
#include <string.h>

typedef struct scan {
    const char *s;
    size_t len, i;
    int line;
} scan;

static void advance(scan *sc, size_t n)
{
    for (size_t k = 0; k < n && sc->i < sc->len; k++)
        if (sc->s[sc->i++] == '\n')
            sc->line++;
}

/* At a quote character q: skip to just past the closing one ('' or ""
 * doubled is an escaped quote; backslash escapes only in E'...'). */
static int skip_quoted(scan *sc, char q, int backslash)
{
    advance(sc, 1);
    while (sc->i < sc->len) {
        char c = sc->s[sc->i];
        if (backslash && c == '\\') {
            advance(sc, 2);
        } else if (c == q) {
            advance(sc, 1);
            if (sc->i < sc->len && sc->s[sc->i] == q)
                advance(sc, 1);
            else
                return 0;
        } else {
            advance(sc, 1);
        }
    }
    return 1;
}

static int skip_block_comment(scan *sc)
{
    int depth = 0;
    while (sc->i < sc->len) {
        if (sc->s[sc->i] == '/' && sc->i + 1 < sc->len &&
            sc->s[sc->i + 1] == '*') {
            depth++;
            advance(sc, 2);
        } else if (sc->s[sc->i] == '*' && sc->i + 1 < sc->len &&
                   sc->s[sc->i + 1] == '/') {
            advance(sc, 2);
            if (--depth == 0)
                return 0;
        } else {
            advance(sc, 1);
        }
    }
    return 1;
}

/* Length of a dollar-quote tag ("$$" or "$name$") at sc->i, or 0. */
static size_t dollar_tag(const scan *sc)
{
    size_t j = sc->i + 1;
    if (j < sc->len && (isalpha((unsigned char)sc->s[j]) || sc->s[j] == '_'))
        while (j < sc->len &&
               (isalnum((unsigned char)sc->s[j]) || sc->s[j] == '_'))
            j++;
    return j < sc->len && sc->s[j] == '$' ? j + 1 - sc->i : 0;
}

static int skip_dollar(scan *sc, size_t taglen)
{
    const char *tag = sc->s + sc->i;
    advance(sc, taglen);
    while (sc->i + taglen <= sc->len) {
        if (memcmp(sc->s + sc->i, tag, taglen) == 0) {
            advance(sc, taglen);
            return 0;
        }
        advance(sc, 1);
    }
    advance(sc, sc->len);
    return 1;
}

static int ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '$';
}

/* Skips one token that may hide a ';' (quote, comment); returns 1 if it
 * is unterminated, 0 otherwise, -1 if there was no such token here. */
static int skip_special(scan *sc)
{
    const char *s = sc->s;
    size_t i = sc->i;
    char c = s[i];
    int prev_ident = i > 0 && ident_char(s[i - 1]);
    if (c == '-' && i + 1 < sc->len && s[i + 1] == '-') {
        while (sc->i < sc->len && s[sc->i] != '\n')
            advance(sc, 1);
        return 0;
    }
    if (c == '/' && i + 1 < sc->len && s[i + 1] == '*')
        return skip_block_comment(sc);
    if ((c == 'E' || c == 'e') && !prev_ident && i + 1 < sc->len &&
        s[i + 1] == '\'') {
        advance(sc, 1);
        return skip_quoted(sc, '\'', 1);
    }
    if (c == '\'' || c == '"')
        return skip_quoted(sc, c, 0);
    if (c == '$' && !prev_ident) {
        size_t tag = dollar_tag(sc);
        if (tag)
            return skip_dollar(sc, tag);
    }
    return -1;
}

int nyx_sql_split(const char *sql, size_t len,
                  int (*fn)(const nyx_sql_stmt *, void *), void *arg,
                  int *unterminated_line)
{
    scan sc = {sql, len, 0, 1};
    nyx_sql_stmt st = {0, 0, 0};
    int significant = 0;
    while (sc.i <= len) {
        if (sc.i == len || sql[sc.i] == ';') {
            st.len = sc.i - st.offset;
            if (significant) {
                int rc = fn(&st, arg);
                if (rc)
                    return rc;
            }
            if (sc.i == len)
                break;
            advance(&sc, 1);
            st.offset = sc.i, st.line = 0, significant = 0;
            continue;
        }
        int is_comment = (sql[sc.i] == '-' || sql[sc.i] == '/') &&
                         sc.i + 1 < len &&
                         sql[sc.i + 1] == (sql[sc.i] == '-' ? '-' : '*');
        if (!is_comment && !isspace((unsigned char)sql[sc.i]) && !significant) {
            significant = 1;
            st.line = sc.line;
        }
        int start_line = sc.line;
        int r = skip_special(&sc);
        if (r == 1) {
            if (unterminated_line)
                *unterminated_line = start_line;
            return 1;
        }
        if (r < 0)
            advance(&sc, 1);
    }
    return 0;
}

int nyx_sql_line_at(const char *sql, const nyx_sql_stmt *stmt, int pos)
{
    /* The text sent to the server starts at stmt->offset (just after the
     * previous ';'), so count lines from the top of the script to there,
     * then over pos - 1 UTF-8 characters of the statement. */
    int line = 1, chars = 0;
    for (const char *q = sql; q < sql + stmt->offset; q++)
        line += *q == '\n';
    const char *p = sql + stmt->offset, *end = p + stmt->len;
    for (; p < end && chars < pos - 1; p++) {
        chars += (*p & 0xC0) != 0x80;
        line += *p == '\n';
    }
    return line;
}
