#include "paths.h"

#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int has_library(const char *dir)
{
    char probe[PATH_MAX];
    return nyx_fmt(probe, sizeof probe, "%s/lua/nyx/init.lua", dir) == 0 &&
           access(probe, R_OK) == 0;
}

const char *nyx_exe_path(void)
{
    static char exe[PATH_MAX];
    if (!exe[0]) {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0)
            return "nyx";
        exe[n] = '\0';
    }
    return exe;
}

/* Canonical form of dir, or NULL when it does not exist. */
static const char *candidate(char *out, const char *dir)
{
    char *real = realpath(dir, NULL);
    if (!real)
        return NULL;
    int ok = has_library(real) && nyx_fmt(out, PATH_MAX, "%s", real) == 0;
    free(real);
    return ok ? out : NULL;
}

const char *nyx_home(void)
{
    static char home[PATH_MAX];
    static int searched;
    if (searched)
        return home[0] ? home : NULL;
    searched = 1;

    const char *env = getenv("NYX_HOME");
    if (env && *env && candidate(home, env))
        return home;

    char bindir[PATH_MAX], probe[PATH_MAX];
    if (nyx_fmt(bindir, sizeof bindir, "%s", nyx_exe_path()) == 0) {
        char *slash = strrchr(bindir, '/');
        if (slash) {
            *slash = '\0';
            if (nyx_fmt(probe, sizeof probe, "%s/%s", bindir,
                        NYX_BIN_TO_DATA) == 0 &&
                candidate(home, probe))
                return home;
            if (nyx_fmt(probe, sizeof probe, "%s/..", bindir) == 0 &&
                candidate(home, probe))
                return home;
        }
    }
#ifdef NYX_SOURCE_DIR
    if (candidate(home, NYX_SOURCE_DIR))
        return home;
#endif
    home[0] = '\0';
    return NULL;
}

int nyx_data_dir(char *buf, size_t len, nyx_err *err)
{
    /* The XDG spec says a relative XDG_DATA_HOME is invalid and ignored. */
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && xdg[0] == '/') {
        if (nyx_fmt(buf, len, "%s/nyx", xdg) == 0)
            return 0;
        nyx_errf(err, "XDG_DATA_HOME is too long");
        return -1;
    }
    const char *home = getenv("HOME");
    if (!home || home[0] != '/') {
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : NULL;
    }
    if (!home) {
        nyx_errf(err, "cannot tell where to keep data: HOME is not set "
                      "(set HOME, XDG_DATA_HOME or NYX_DATABASE_URL)");
        return -1;
    }
    if (nyx_fmt(buf, len, "%s/.local/share/nyx", home) == 0)
        return 0;
    nyx_errf(err, "HOME is too long");
    return -1;
}

const nyx_asset *nyx_asset_find(const char *name)
{
    for (const nyx_asset *a = nyx_assets; a->name; a++)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}
