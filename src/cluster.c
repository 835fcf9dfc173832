#include "cluster.h"

#include "paths.h"
#include "pg.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#define SOCKET_NAME  "/.s.PGSQL.5432"
#define SUN_PATH_MAX 107 /* sizeof(sockaddr_un.sun_path) - 1 on Linux */

static void note(nyx_cluster *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(nyx_cluster *c, const char *fmt, ...)
{
    if (c->nnotes >= 4)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->notes[c->nnotes++], sizeof c->notes[0], fmt, ap);
    va_end(ap);
}

/* 'value' quoted for a conninfo string. */
static int quote_conninfo(char *out, size_t len, const char *value)
{
    size_t o = 0;
    out[o++] = '\'';
    for (const char *p = value; *p; p++) {
        if (o + 3 >= len)
            return -1;
        if (*p == '\'' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o++] = '\'';
    out[o] = '\0';
    return 0;
}

int nyx_cluster_init(nyx_cluster *c, nyx_err *err)
{
    memset(c, 0, sizeof *c);
    char base[PATH_MAX], host[PATH_MAX + 8];
    if (nyx_data_dir(base, sizeof base, err) < 0)
        return -1;
    if (nyx_fmt(c->dir, sizeof c->dir, "%s/pg", base) < 0 ||
        quote_conninfo(host, sizeof host, c->dir) < 0) {
        nyx_errf(err, "data folder path too long: %s/pg", base);
        return -1;
    }
    if (nyx_fmt(c->conninfo, sizeof c->conninfo,
                "host=%s port=5432 dbname=nyx user=nyx", host) < 0 ||
        nyx_fmt(c->admin, sizeof c->admin,
                "host=%s port=5432 dbname=postgres user=nyx "
                "connect_timeout=10",
                host) < 0) {
        nyx_errf(err, "data folder path too long: %s", c->dir);
        return -1;
    }
    return 0;
}

static int file_exists(const char *dir, const char *name)
{
    char path[PATH_MAX];
    return nyx_fmt(path, sizeof path, "%s/%s", dir, name) == 0 &&
           access(path, F_OK) == 0;
}

int nyx_cluster_exists(const nyx_cluster *c)
{
    return file_exists(c->dir, "PG_VERSION");
}

int nyx_cluster_running(const nyx_cluster *c)
{
    return nyx_cluster_exists(c) && nyx_pg_ping(c->admin);
}

/* ---- finding the server programs ------------------------------------- */

static int has_programs(const char *dir)
{
    return file_exists(dir, "initdb") && file_exists(dir, "pg_ctl") &&
           file_exists(dir, "postgres");
}

/* Debian and Ubuntu keep each major version in /usr/lib/postgresql/N/bin;
 * prefer the version the data folder was made with, else the newest. */
static int find_debian(char *out, size_t len, int want)
{
    DIR *d = opendir("/usr/lib/postgresql");
    if (!d)
        return -1;
    int best = -1;
    struct dirent *e;
    char probe[PATH_MAX];
    while ((e = readdir(d))) {
        int v = atoi(e->d_name);
        if (v <= 0 ||
            nyx_fmt(probe, sizeof probe, "/usr/lib/postgresql/%s/bin",
                    e->d_name) < 0 ||
            !has_programs(probe))
            continue;
        if (want ? v == want : v > best)
            best = v;
    }
    closedir(d);
    return best < 0 ? -1
                    : nyx_fmt(out, len, "/usr/lib/postgresql/%d/bin", best);
}

static int find_in_path(char *out, size_t len)
{
    const char *path = getenv("PATH");
    char dir[PATH_MAX];
    for (const char *p = path; p && *p;) {
        size_t n = strcspn(p, ":");
        if (n > 0 && n < sizeof dir) {
            memcpy(dir, p, n);
            dir[n] = '\0';
            if (has_programs(dir))
                return nyx_fmt(out, len, "%s", dir);
        }
        p += n + (p[n] == ':');
    }
    return -1;
}

static int find_bindir(nyx_cluster *c, nyx_err *err)
{
    const char *env = getenv("NYX_PG_BINDIR");
    if (env && *env) {
        if (has_programs(env))
            return nyx_fmt(c->bindir, sizeof c->bindir, "%s", env);
        nyx_errf(err, "NYX_PG_BINDIR=%s has no initdb, pg_ctl and postgres",
                 env);
        return -1;
    }
    int want = 0;
    char path[PATH_MAX];
    if (nyx_fmt(path, sizeof path, "%s/PG_VERSION", c->dir) == 0) {
        FILE *f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%d", &want) != 1)
                want = 0;
            fclose(f);
        }
    }
    if ((want && find_debian(c->bindir, sizeof c->bindir, want) == 0) ||
        find_debian(c->bindir, sizeof c->bindir, 0) == 0 ||
        find_in_path(c->bindir, sizeof c->bindir) == 0)
        return 0;
    nyx_errf(err, "no PostgreSQL server programs (initdb, pg_ctl, postgres) "
                  "found for the embedded database: install them (Debian/"
                  "Ubuntu: apt-get install postgresql; Fedora: dnf install "
                  "postgresql-server) or set NYX_DATABASE_URL to an existing "
                  "database");
    return -1;
}

/* ---- running them ---------------------------------------------------- */

static void close_fds_from(int lowfd)
{
    long max = sysconf(_SC_OPEN_MAX);
    for (int fd = lowfd; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
        close(fd);
}

/* Runs argv (argv[0] is a program in bindir) as the server's account,
 * collecting its output; returns its exit status, or -1. */
static int run(const nyx_cluster *c, const char *const argv[], nyx_buf *out,
               nyx_err *err)
{
    char prog[PATH_MAX];
    if (nyx_fmt(prog, sizeof prog, "%s/%s", c->bindir, argv[0]) < 0) {
        nyx_errf(err, "path too long: %s/%s", c->bindir, argv[0]);
        return -1;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        nyx_errf(err, "cannot run %s: %s", argv[0], strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        nyx_errf(err, "cannot run %s: %s", argv[0], strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close_fds_from(3);
        if (c->run_user[0] &&
            (setgroups(0, NULL) < 0 || setgid(c->run_gid) < 0 ||
             setuid(c->run_uid) < 0)) {
            fprintf(stderr, "cannot switch to user %s: %s\n", c->run_user,
                    strerror(errno));
            _exit(126);
        }
        /* initdb and pg_ctl resolve their own paths against the working
         * folder, which the server's account may not be allowed into. */
        if (chdir("/") < 0)
            _exit(126);
        unsetenv("PGDATA"); /* -D says where; nothing else may */
        /* argv[0] as a full path: initdb finds postgres next to itself */
        const char *args[16] = {prog};
        for (int i = 1; i < 15 && argv[i]; i++)
            args[i] = argv[i];
        execv(prog, (char *const *)args);
        fprintf(stderr, "cannot run %s: %s\n", prog, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    char chunk[4096];
    ssize_t n;
    while ((n = read(fds[0], chunk, sizeof chunk)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (out && out->len < (1u << 20) &&
                      nyx_buf_add(out, chunk, (size_t)n) < 0))
            break;
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            nyx_errf(err, "waiting for %s: %s", argv[0], strerror(errno));
            return -1;
        }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The last non-blank line of text, copied into line. */
static void last_line(const char *text, char *line, size_t len)
{
    const char *end = text + strlen(text);
    while (end > text && (end[-1] == '\n' || end[-1] == ' '))
        end--;
    const char *start = end;
    while (start > text && start[-1] != '\n')
        start--;
    snprintf(line, len, "%.*s", (int)(end - start), start);
}

static int run_checked(const nyx_cluster *c, const char *const argv[],
                       const char *what, nyx_err *err)
{
    nyx_buf out = {0};
    int rc = run(c, argv, &out, err);
    if (rc > 0) {
        char line[512] = "";
        if (out.data)
            last_line(out.data, line, sizeof line);
        nyx_errf(err, "%s failed (%s exited with %d): %s", what, argv[0], rc,
                 line[0] ? line : "no output");
    }
    nyx_buf_free(&out);
    return rc == 0 ? 0 : -1;
}

/* ---- running as root ------------------------------------------------- */

static int pick_account(nyx_cluster *c, nyx_err *err)
{
    if (geteuid() != 0)
        return 0;
    const char *names[] = {getenv("NYX_PG_USER"), "postgres", "nobody"};
    for (size_t i = 0; i < 3; i++) {
        struct passwd *pw = names[i] && *names[i] ? getpwnam(names[i]) : NULL;
        if (!pw || pw->pw_uid == 0)
            continue;
        snprintf(c->run_user, sizeof c->run_user, "%s", pw->pw_name);
        c->run_uid = pw->pw_uid;
        c->run_gid = pw->pw_gid;
        return 0;
    }
    nyx_errf(err, "running as root, and PostgreSQL refuses to: no 'postgres' "
                  "or 'nobody' account to run the embedded server as "
                  "(set NYX_PG_USER to an unprivileged account)");
    return -1;
}

/* POSIX ACLs as Linux stores them in the system.posix_acl_access xattr. */
#define ACL_XATTR "system.posix_acl_access"
enum {
    A_USER_OBJ = 1,
    A_USER = 2,
    A_GROUP_OBJ = 4,
    A_GROUP = 8,
    A_MASK = 0x10,
    A_OTHER = 0x20
};
typedef struct acl_entry {
    uint16_t tag, perm;
    uint32_t id;
} acl_entry;

static int by_tag(const void *a, const void *b)
{
    const acl_entry *x = a, *y = b;
    if (x->tag != y->tag)
        return x->tag - y->tag;
    return (x->id > y->id) - (x->id < y->id);
}

/* Adds "user:uid:--x" to path's ACL: the account may pass through the
 * folder, and nobody else gains anything. */
static int acl_allow_search(const char *path, uid_t uid)
{
    unsigned char raw[4 + 8 * 32];
    acl_entry e[34];
    size_t n = 0;
    ssize_t len = getxattr(path, ACL_XATTR, raw, sizeof raw);
    if (len >= 4) {
        for (n = 0; n < (size_t)(len - 4) / 8; n++) {
            memcpy(&e[n], raw + 4 + 8 * n, 8);
            e[n].tag = le16toh(e[n].tag), e[n].perm = le16toh(e[n].perm);
            e[n].id = le32toh(e[n].id);
        }
    } else if (errno == ENODATA) {
        struct stat st;
        if (stat(path, &st) < 0)
            return -1;
        e[n++] = (acl_entry){A_USER_OBJ, (st.st_mode >> 6) & 7, UINT32_MAX};
        e[n++] = (acl_entry){A_GROUP_OBJ, (st.st_mode >> 3) & 7, UINT32_MAX};
        e[n++] = (acl_entry){A_OTHER, st.st_mode & 7, UINT32_MAX};
    } else {
        return -1;
    }
    acl_entry *user = NULL, *mask = NULL;
    uint16_t group_class = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].tag == A_USER && e[i].id == uid)
            user = &e[i];
        if (e[i].tag == A_MASK)
            mask = &e[i];
        if (e[i].tag & (A_USER | A_GROUP_OBJ | A_GROUP))
            group_class |= e[i].perm;
    }
    if (!user)
        user = &e[n], e[n++] = (acl_entry){A_USER, 0, uid};
    user->perm |= 1;
    if (!mask) /* the mask keeps what the group class had, plus search */
        e[n++] = (acl_entry){A_MASK, group_class | 1, UINT32_MAX};
    else
        mask->perm |= 1;
    qsort(e, n, sizeof *e, by_tag);
    uint32_t version = htole32(2);
    memcpy(raw, &version, 4);
    for (size_t i = 0; i < n; i++) {
        acl_entry le = {htole16(e[i].tag), htole16(e[i].perm),
                        htole32(e[i].id)};
        memcpy(raw + 4 + 8 * i, &le, 8);
    }
    return setxattr(path, ACL_XATTR, raw, 4 + 8 * n, 0);
}

/* Which folders on the way to dir the account cannot pass through: each
 * one's path length, written by a child running as that account. */
static int blocked_prefixes(const nyx_cluster *c, size_t *lens, int max)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        if (setgroups(0, NULL) < 0 || setgid(c->run_gid) < 0 ||
            setuid(c->run_uid) < 0)
            _exit(1);
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s", c->dir);
        for (char *p = path + 1; *p; p++) {
            if (*p != '/')
                continue;
            *p = '\0';
            size_t len = strlen(path);
            if (access(path, X_OK) < 0 &&
                write(fds[1], &len, sizeof len) != sizeof len)
                _exit(1);
            *p = '/';
        }
        _exit(0);
    }
    close(fds[1]);
    int n = 0;
    while (pid > 0 && n < max &&
           read(fds[0], &lens[n], sizeof lens[n]) == sizeof lens[n])
        n++;
    close(fds[0]);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return pid < 0 ? -1 : n;
}

static int grant_passage(nyx_cluster *c, nyx_err *err)
{
    size_t lens[64];
    int n = blocked_prefixes(c, lens, 64);
    char acl[1024] = "", others[1024] = "";
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%.*s", (int)lens[i], c->dir);
        struct stat st;
        char *list = acl;
        if (acl_allow_search(path, c->run_uid) < 0) {
            list = others;
            if (stat(path, &st) < 0 ||
                chmod(path, (st.st_mode & 07777) | S_IXOTH) < 0) {
                nyx_errf(err,
                         "the server's account '%s' cannot reach %s and "
                         "nyx could not let it through %s: %s (set "
                         "XDG_DATA_HOME to a folder it can reach)",
                         c->run_user, c->dir, path, strerror(errno));
                return -1;
            }
        }
        size_t used = strlen(list);
        /* a note, not data: a very long list may be cut */
        (void)nyx_fmt(list + used, 1024 - used, "%s%s", used ? ", " : "", path);
    }
    if (acl[0])
        note(c,
             "let the server's account '%s' pass through %s (ACL "
             "user:%s:--x; nothing else changed)",
             c->run_user, acl, c->run_user);
    if (others[0])
        note(c,
             "let the server's account '%s' pass through %s (no ACL "
             "support there: added search permission for others)",
             c->run_user, others);
    return n < 0 ? -1 : 0;
}

/* ---- creating, starting, stopping ------------------------------------ */

static int lock_parent(const nyx_cluster *c, nyx_err *err)
{
    char parent[PATH_MAX], lock[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", c->dir);
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = '\0';
    if (nyx_mkdirs(parent, 0700, err) < 0)
        return -1;
    if (nyx_fmt(lock, sizeof lock, "%s/pg.lock", parent) < 0) {
        nyx_errf(err, "path too long: %s/pg.lock", parent);
        return -1;
    }
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) < 0) {
        nyx_errf(err, "cannot lock %s: %s", lock, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

static int write_config(const nyx_cluster *c, nyx_err *err)
{
    char path[PATH_MAX];
    if (nyx_fmt(path, sizeof path, "%s/postgresql.conf", c->dir) < 0) {
        nyx_errf(err, "path too long: %s/postgresql.conf", c->dir);
        return -1;
    }
    FILE *f = fopen(path, "a");
    if (!f) {
        nyx_errf(err, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "\n# nyx: a private server, reachable only through the Unix "
               "socket in this folder\nlisten_addresses = ''\nport = 5432\n"
               "unix_socket_directories = '");
    for (const char *p = c->dir; *p; p++)
        fprintf(f, *p == '\'' ? "''" : "%c", *p);
    fprintf(f, "'\nunix_socket_permissions = 0700\n");
    return fclose(f) == 0 ? 0 : -1;
}

static int create(nyx_cluster *c, nyx_err *err)
{
    if (!dir_is_empty(c->dir)) {
        nyx_errf(err,
                 "%s exists but holds no PostgreSQL cluster; move it "
                 "away and nyx will create a new one there",
                 c->dir);
        return -1;
    }
    if (nyx_mkdirs(c->dir, 0700, err) < 0)
        return -1;
    if (c->run_user[0] && chown(c->dir, c->run_uid, c->run_gid) < 0) {
        nyx_errf(err, "cannot give %s to %s: %s", c->dir, c->run_user,
                 strerror(errno));
        return -1;
    }
    if (c->run_user[0] && grant_passage(c, err) < 0)
        return -1;
    const char *argv[] = {"initdb", "-D", c->dir, "-U",          "nyx", "-A",
                          "trust",  "-E", "UTF8", "--no-locale", NULL};
    if (run_checked(c, argv, "creating the embedded database", err) < 0)
        return -1;
    return write_config(c, err);
}

static int start(const nyx_cluster *c, nyx_err *err)
{
    char log[PATH_MAX];
    if (nyx_fmt(log, sizeof log, "%s/server.log", c->dir) < 0) {
        nyx_errf(err, "path too long: %s/server.log", c->dir);
        return -1;
    }
    const char *argv[] = {"pg_ctl", "-D", c->dir, "-l",    log, "-w",
                          "-t",     "60", "-s",   "start", NULL};
    if (run_checked(c, argv, "starting the embedded database", err) == 0)
        return 0;
    /* pg_ctl says little; the server's log says why. */
    char *text = nyx_read_file(log, NULL, NULL);
    if (text) {
        char line[512];
        last_line(text, line, sizeof line);
        free(text);
        nyx_errf(err,
                 "starting the embedded database in %s failed: %s (log: "
                 "%s)",
                 c->dir, line, log);
    }
    return -1;
}

static int create_database(const nyx_cluster *c, nyx_err *err)
{
    nyx_pg *pg = nyx_pg_connect(c->admin, NULL, NULL, err);
    if (!pg)
        return -1;
    int rc = nyx_pg_run(pg, "CREATE DATABASE nyx", 0, NULL,
                        "creating database nyx", err);
    nyx_pg_close(pg);
    return rc;
}

static int prepare(nyx_cluster *c, nyx_err *err)
{
    if (strlen(c->dir) + strlen(SOCKET_NAME) > SUN_PATH_MAX) {
        nyx_errf(err,
                 "the embedded database's socket path %s%s is longer "
                 "than the %d bytes Unix sockets allow; set "
                 "XDG_DATA_HOME to a shorter path",
                 c->dir, SOCKET_NAME, SUN_PATH_MAX);
        return -1;
    }
    return find_bindir(c, err) < 0 || pick_account(c, err) < 0 ? -1 : 0;
}

/* prepare, then take the lock; returns its descriptor or -1. */
static int prepare_locked(nyx_cluster *c, nyx_err *err)
{
    return prepare(c, err) < 0 ? -1 : lock_parent(c, err);
}

int nyx_cluster_ensure(nyx_cluster *c, int *created, nyx_err *err)
{
    *created = 0;
    if (nyx_cluster_running(c))
        return 0;
    int lock = prepare_locked(c, err);
    if (lock < 0)
        return -1;
    int rc = 0;
    if (nyx_cluster_running(c)) /* another nyx started it meanwhile */
        goto done;
    if (!nyx_cluster_exists(c)) {
        rc = create(c, err);
        *created = rc == 0;
    } else if (c->run_user[0]) {
        rc = grant_passage(c, err);
    }
    if (rc == 0)
        rc = start(c, err);
    if (rc == 0 && *created)
        rc = create_database(c, err);
done:
    close(lock);
    return rc;
}

int nyx_cluster_stop(nyx_cluster *c, int *was_running, nyx_err *err)
{
    *was_running = 0;
    if (!nyx_cluster_exists(c))
        return 0;
    int lock = prepare_locked(c, err);
    if (lock < 0)
        return -1;
    /* pg_ctl status: 0 when a server runs, 3 when none does. */
    const char *status[] = {"pg_ctl", "-D", c->dir, "status", NULL};
    int rc = run(c, status, NULL, err);
    if (rc == 0) {
        *was_running = 1;
        const char *argv[] = {"pg_ctl", "-D", c->dir, "-m",   "fast", "-w",
                              "-t",     "60", "-s",   "stop", NULL};
        rc = run_checked(c, argv, "stopping the embedded database", err);
    } else if (rc == 3) {
        rc = 0;
    } else if (rc > 0) {
        nyx_errf(err, "pg_ctl status -D %s exited with %d", c->dir, rc);
        rc = -1;
    }
    close(lock);
    return rc;
}
