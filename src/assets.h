/* Files compiled into the binary by cmake/embed.cmake: the Lua files of lua/,
 * the migrations in sql/ and the templates in prompts/, named by their path
 * relative to the source tree.
 */
#ifndef NYX_ASSETS_H
#define NYX_ASSETS_H

#include <stddef.h>

typedef struct nyx_asset {
    const char *name; /* "lua/nyx/tree.lua" */
    const char *data;
    size_t size;
} nyx_asset;

extern const nyx_asset nyx_assets[]; /* ends with a {0} entry */

#endif
