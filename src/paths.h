/* Where nyx finds its own files and where it keeps its data. */
#ifndef NYX_PATHS_H
#define NYX_PATHS_H

#include "assets.h"
#include "util.h"

/* The folder holding lua/, sql/ and prompts/ for this nyx: $NYX_HOME, else
 * <exe>/../share/nyx (installed:
 * the install layout's relative path), else <exe>/.. (a build folder inside the
 * source tree), else the source tree it was built from. NULL when none of
 * them has lua/nyx/init.lua: nyx then runs on its embedded copies. */
const char *nyx_home(void);

/* Absolute path of the running executable ("nyx" if unknown). */
const char *nyx_exe_path(void);

/* ${XDG_DATA_HOME:-$HOME/.local/share}/nyx, without creating it. */
int nyx_data_dir(char *buf, size_t len, nyx_err *err);

/* The embedded file with this name (e.g. "sql/0001_tables.sql"). */
const nyx_asset *nyx_asset_find(const char *name);

#endif
