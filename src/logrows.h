/* Log rows in C: what nyx.db.log is given is turned into text when it is
 * logged (one buffer per caller, no Lua table kept), and a batch of
 * callers' rows is folded and built into one statement here (lua_db.c
 * sends it). A row's values are kept as the elements of a PostgreSQL array
 * literal; a table's rows then go as one array per column, unnest()ed, or,
 * when the log connection's catalog does not know the table or a column
 * (a table made since, an array column), as one JSON parameter for
 * json_populate_recordset. */
#ifndef NYX_LOGROWS_H
#define NYX_LOGROWS_H

#include "util.h"

#include <lua.h>
#include <stdint.h>

typedef struct lr_catalog lr_catalog;
typedef struct lr_name lr_name;
typedef struct lr_shape lr_shape;

/* What a value was: its text is an array element, quoted for LR_SPECIAL
 * (NaN, Infinity, -Infinity), LR_STR and LR_JSON (a table's JSON text). */
enum { LR_NULL, LR_BOOL, LR_NUM, LR_SPECIAL, LR_STR, LR_JSON };

typedef struct lr_slot {
    const char *p; /* NULL for LR_NULL */
    uint32_t len;
    uint8_t kind;
} lr_slot;

typedef struct lr_row {
    const lr_name *table;
    const lr_shape *shape; /* its columns; the first is the key */
    int update;
    lr_slot *slots; /* one per column */
} lr_row;

/* One caller's rows, and the ids they write and refer to: values of 36
 * bytes (a UUID's text) in the first column or a column named id are
 * written (ids[0 .. nwrite)), the others referred to. */
typedef struct lr_rows {
    lr_row *rows;
    lr_slot *slots;
    nyx_buf text;
    const char **ids;
    int nrows, nvalues, nwrite, nids;
} lr_rows;

/* The names, column lists and column types the writer knows, made once
 * per state (a userdata in the registry, freed with the state). */
lr_catalog *lr_catalog_get(lua_State *L);

/* The column types from the log connection's catalog, replacing those
 * known: call lr_types_begin, then lr_types_add for each column. A table
 * whose columns are all known, none an array, goes as arrays. */
void lr_types_begin(lr_catalog *cat);
int lr_types_add(lr_catalog *cat, const char *table, const char *column,
                 const char *type);

/* Reads the rows at idx ({{table=, columns=, values=, update=}, ...}) into
 * out, which must be zeroed (and freed with lr_rows_free, also after a
 * raise). append: update rows are refused. Raises on a row that is not
 * well made or a value that cannot be logged. */
void lr_rows_read(lua_State *L, lr_catalog *cat, int idx, lr_rows *out,
                  int append);
void lr_rows_free(lr_rows *r);

/* A batch's statement and its parameters (texts, NUL-terminated). */
typedef struct lr_batch {
    nyx_buf sql, text;
    size_t *at; /* parameter k is text.data + at[k] */
    const char **params;
    int nparams, cap;
    unsigned long long inserted, updated; /* row versions, folded once */
} lr_batch;

/* Builds the statement of the callers' rows, in their order: an update
 * folded into the row before it with the same table and key (an insert,
 * or an update) in the batch, the rows grouped by table and columns, one
 * INSERT (or UPDATE) per group chained in a WITH. 0, or -1 with err set
 * (no memory). nparams 0: nothing to write. */
int lr_build(lr_catalog *cat, lr_rows *const *callers, int n, lr_batch *b,
             nyx_err *err);
void lr_batch_free(lr_batch *b);

#endif
