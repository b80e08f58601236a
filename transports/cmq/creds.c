/* creds.c: who may sign CMQ requests (docs/cmq.md "Identity"): a table of
 * SecretId -> SecretKey and the mqhub user a request signed with it runs as
 * (NULL: the daemon's root token, the single secret_id/secret_key form).
 *
 * Start with cmq_creds_load(): the credentials file, one credential a line
 *     <SecretId> <user> <SecretKey>
 * ('#' comments and blank lines ignored), refused unless it is a regular
 * file that neither group nor others may read or write (owner_only(); the
 * same check for secret_key_file, cmq_creds_key_file()). The server needs
 * each SecretKey in plaintext (it recomputes the client's HMAC), so the
 * keys stay in that file and in this process's memory, never in the
 * replicated state; cmq_creds_free() wipes them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cmq.h"
#include "wire.h"

#define CRED_LINE_MAX 1024
#define CRED_ID_MAX 128
#define CRED_KEY_MIN 16 /* characters of a SecretKey in the file */

static bool printable(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

int cmq_creds_add(cmq_creds_t *c, const char *id, const char *key, const char *user,
                  char *errmsg, size_t errlen)
{
    cmq_cred_t *v, *e;

    if (*id == '\0' || strlen(id) > CRED_ID_MAX || !printable(id)) {
        snprintf(errmsg, errlen, "SecretId \"%.40s\" must be 1-%d printable characters "
                 "without spaces", id, CRED_ID_MAX);
        return -1;
    }
    if (*key == '\0') {
        snprintf(errmsg, errlen, "SecretId %s has an empty SecretKey", id);
        return -1;
    }
    /* The names user.create accepts: any other could never be a user. */
    if (user != NULL && !wire_name_valid(user, strlen(user))) {
        snprintf(errmsg, errlen, "SecretId %s: user \"%.70s\" is not a valid user name "
                 "(1-64 of A-Z a-z 0-9 _ - ., starting with a letter or digit)", id, user);
        return -1;
    }
    if (cmq_creds_find(c, id) != NULL) {
        snprintf(errmsg, errlen, "SecretId %s is given twice", id);
        return -1;
    }
    if ((v = realloc(c->v, (c->n + 1) * sizeof *v)) == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    c->v = v;
    e = &v[c->n];
    e->secret_id = strdup(id);
    e->secret_key = strdup(key);
    e->user = user != NULL ? strdup(user) : NULL;
    if (e->secret_id == NULL || e->secret_key == NULL || (user != NULL && e->user == NULL)) {
        free(e->secret_id);
        free(e->secret_key);
        free(e->user);
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    c->n++;
    return 0;
}

/* One line of the file (NUL-terminated, newline removed) into @c. */
static int load_line(cmq_creds_t *c, char *line, const char *path, unsigned lineno,
                     char *errmsg, size_t errlen)
{
    char *save = NULL, *id, *user, *key, *extra;
    char err[256];

    if ((id = strtok_r(line, " \t\r", &save)) == NULL || id[0] == '#')
        return 0;
    user = strtok_r(NULL, " \t\r", &save);
    key = strtok_r(NULL, " \t\r", &save);
    extra = strtok_r(NULL, " \t\r", &save);
    if (key == NULL || extra != NULL) {
        snprintf(errmsg, errlen, "%s:%u: expected \"SecretId user SecretKey\"", path, lineno);
        return -1;
    }
    if (strlen(key) < CRED_KEY_MIN) {
        snprintf(errmsg, errlen, "%s:%u: the SecretKey of %s is shorter than %d characters "
                 "(openssl rand -base64 24 makes a good one)", path, lineno, id, CRED_KEY_MIN);
        return -1;
    }
    if (cmq_creds_add(c, id, key, user, err, sizeof err) != 0) {
        snprintf(errmsg, errlen, "%s:%u: %s", path, lineno, err);
        return -1;
    }
    return 0;
}

/* @path (config key @key) opened for reading: a regular file without
 * group or other permissions, checked on the open file. The fd, or -1. */
static int owner_only(const char *key, const char *path, char *errmsg, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st = {0};

    if (fd < 0) {
        snprintf(errmsg, errlen, "%s %s: %s", key, path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
        snprintf(errmsg, errlen, "%s %s must be a regular file that only its owner may read "
                 "(mode %03o; chmod 600 %s)", key, path, (unsigned)(st.st_mode & 0777), path);
        close(fd);
        return -1;
    }
    return fd;
}

int cmq_creds_key_file(const char *path, char *key, size_t size, char *errmsg, size_t errlen)
{
    int fd = owner_only("secret_key_file", path, errmsg, errlen);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = read(fd, key, size);
    close(fd);
    if (n >= (ssize_t)size) /* longer than @key: never a truncated key */
        n = 0;
    while (n > 0 && (key[n - 1] == '\n' || key[n - 1] == '\r' || key[n - 1] == ' ' ||
                     key[n - 1] == '\t'))
        n--;
    if (n <= 0 || memchr(key, '\n', (size_t)n) != NULL ||
        memchr(key, '\0', (size_t)n) != NULL) {
        OPENSSL_cleanse(key, size);
        snprintf(errmsg, errlen, "secret_key_file %s must hold one SecretKey on one line, "
                 "in less than %zu bytes", path, size);
        return -1;
    }
    key[n] = '\0';
    return 0;
}

int cmq_creds_load(cmq_creds_t *c, const char *path, char *errmsg, size_t errlen)
{
    int fd = owner_only("credentials_file", path, errmsg, errlen);
    char line[CRED_LINE_MAX + 2];
    unsigned lineno = 0;
    FILE *f;
    int rc = 0;

    if (fd < 0)
        return -1;
    if ((f = fdopen(fd, "r")) == NULL) {
        snprintf(errmsg, errlen, "credentials_file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        size_t n = strlen(line);
        lineno++;
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        else if (!feof(f)) {
            snprintf(errmsg, errlen, "%s:%u: line longer than %d bytes", path, lineno,
                     CRED_LINE_MAX);
            rc = -1;
            break;
        }
        rc = load_line(c, line, path, lineno, errmsg, errlen);
    }
    OPENSSL_cleanse(line, sizeof line);
    fclose(f);
    return rc;
}

const cmq_cred_t *cmq_creds_find(const cmq_creds_t *c, const char *secret_id)
{
    for (size_t i = 0; secret_id != NULL && i < c->n; i++)
        if (strcmp(c->v[i].secret_id, secret_id) == 0)
            return &c->v[i];
    return NULL;
}

void cmq_creds_free(cmq_creds_t *c)
{
    for (size_t i = 0; i < c->n; i++) {
        OPENSSL_cleanse(c->v[i].secret_key, strlen(c->v[i].secret_key));
        free(c->v[i].secret_id);
        free(c->v[i].secret_key);
        free(c->v[i].user);
    }
    free(c->v);
    c->v = NULL;
    c->n = 0;
}
