/* The embedded default database: a private PostgreSQL cluster under
 * ${XDG_DATA_HOME:-$HOME/.local/share}/nyx/pg that listens only on a Unix
 * socket in that folder. Created on first use, reused afterwards; as root
 * the server runs as an unprivileged account (PostgreSQL refuses root). */
#ifndef NYX_CLUSTER_H
#define NYX_CLUSTER_H

#include "util.h"

#include <limits.h>
#include <sys/types.h>

typedef struct nyx_cluster {
    char dir[PATH_MAX];           /* the data folder, also the socket's */
    char conninfo[PATH_MAX + 64]; /* for the "nyx" database */
    char admin[PATH_MAX + 64];    /* for the "postgres" database */
    char bindir[PATH_MAX];        /* initdb, pg_ctl; found by ensure/stop */
    char run_user[64];            /* "" unless root: the server's account */
    uid_t run_uid;
    gid_t run_gid;
    char notes[4][512]; /* one line each, things the caller prints */
    int nnotes;
} nyx_cluster;

/* Works out the paths from the environment; no side effects. */
int nyx_cluster_init(nyx_cluster *c, nyx_err *err);

int nyx_cluster_exists(const nyx_cluster *c);  /* initdb has run */
int nyx_cluster_running(const nyx_cluster *c); /* accepts connections */

/* Creates the cluster if it does not exist and starts it if it is not
 * running; *created tells which happened. Serialised between processes
 * with a lock file, so two first runs do not race. */
int nyx_cluster_ensure(nyx_cluster *c, int *created, nyx_err *err);

/* Stops the server (fast shutdown); *was_running says if it ran. */
int nyx_cluster_stop(nyx_cluster *c, int *was_running, nyx_err *err);

#endif
