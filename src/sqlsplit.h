/* Splits a SQL script into statements, so a migration can run them one by
 * one and say on which line one failed. Knows quotes ('', E'', ""),
 * dollar quoting ($$, $tag$), -- and nested block comments; not
 * BEGIN ATOMIC bodies. */
#ifndef NYX_SQLSPLIT_H
#define NYX_SQLSPLIT_H

#include <stddef.h>

typedef struct nyx_sql_stmt {
    size_t offset, len; /* the statement, without its ';' */
    int line;           /* 1-based line of its first significant character */
} nyx_sql_stmt;

/* Calls fn for each statement that holds more than blanks and comments;
 * stops early when fn returns non-zero and returns that value. Returns 1
 * if the script ends inside a quote or comment (*line then says where it
 * started), else 0. */
int nyx_sql_split(const char *sql, size_t len,
                  int (*fn)(const nyx_sql_stmt *, void *), void *arg,
                  int *unterminated_line);

/* The 1-based line, within the script, of the 1-based character position
 * pos (as PostgreSQL reports it: characters, not bytes) of stmt. */
int nyx_sql_line_at(const char *sql, const nyx_sql_stmt *stmt, int pos);

#endif
