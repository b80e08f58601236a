/* testdamage.h: damage raft's files on purpose, deterministically, for the
 * tests of docs/operations.md "Damaged data" (testdamage.c). Leaf code like
 * testhub.h: libc and POSIX only. It reads raft_uv 0.22.1's segment format
 * (core/raft/logcheck.c describes it) to find the batch that holds a known
 * message, so a test can flip a byte of that entry's payload, or tear the
 * end of an open segment the way an interrupted write leaves it.
 */
#ifndef MQHUB_TESTDAMAGE_H
#define MQHUB_TESTDAMAGE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct td_batch {
    char file[64];       /* the segment's file name in the raft directory */
    unsigned number;     /* the batch, 1-based */
    size_t off, size;    /* where the batch starts in the file, its length */
    size_t hit;          /* where the needle is in the file (in the payload) */
} td_batch_t;

/* The batch, in a closed segment (@open false) or an open one of @raftdir,
 * whose entries' payload contains @needle. 0, or -1 when there is none. */
int testdamage_find(const char *raftdir, const char *needle, bool open, td_batch_t *out);
/* XOR the byte at @off of @dir/@file with @mask. 0 or -1. */
int testdamage_flip(const char *dir, const char *file, size_t off, unsigned char mask);
/* Leave an interrupted write at the end of open segment @dir/@file: after
 * its last batch, the first half of a copy of that batch (a header that
 * verifies, data cut short, zeros after). @short_file: the file also ends
 * there, in the middle of the copy (raft 0.22.1 double-frees on that). 0 or
 * -1. */
int testdamage_tear(const char *dir, const char *file, bool short_file);
/* The newest snapshot data file of @raftdir (snapshot-T-I-TS) into @out;
 * returns how many snapshots there are (0: none, @out untouched). */
int testdamage_newest_snapshot(const char *raftdir, char *out, size_t len);
/* Run @mqhubd --config @config [@arg] to its end, at most @timeout_ms (then
 * SIGKILL), with stdout and stderr in @out (NUL-terminated, cut at @outlen).
 * Returns its exit status, 128 + signal when killed, -1 when it ran out of
 * time or could not be started. */
int testdamage_run(const char *mqhubd, const char *config, const char *arg, int timeout_ms,
                   char *out, size_t outlen);

#endif
