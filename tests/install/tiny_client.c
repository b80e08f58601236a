/* tiny_client.c: the smallest libmqhub program. install_test.sh builds it
 * against an installed mqhub twice, with pkg-config (mqhub.pc) and with
 * find_package(mqhub) (consumer/CMakeLists.txt), and runs both against the
 * installed mqhubd.
 *
 * usage: tiny_client HOST:PORT QUEUE — pings, sends one message to QUEUE and
 * prints "sent <seq> with libmqhub <version>"; exit status 0 when all worked.
 */
#include <stdio.h>
#include <string.h>

#include <mqhub/client.h>

int main(int argc, char **argv)
{
    static const char body[] = "from tiny_client";
    mqhub_client_t *c;
    mqhub_send_result_t res;
    char err[256];
    int rc;

    if (argc != 3) {
        fprintf(stderr, "usage: tiny_client HOST:PORT QUEUE\n");
        return 2;
    }
    if (mqhub_client_connect(&c, argv[1], NULL, err, sizeof err) != 0) {
        fprintf(stderr, "tiny_client: connect %s: %s\n", argv[1], err);
        return 1;
    }
    rc = mqhub_client_ping(c);
    if (rc == 0)
        rc = mqhub_client_send(c, argv[2], body, strlen(body), NULL, &res);
    if (rc != 0)
        fprintf(stderr, "tiny_client: %s: %s\n", mqhub_client_strerror(rc),
                mqhub_client_errmsg(c));
    else
        printf("sent %llu with libmqhub %s\n", (unsigned long long)res.seq, mqhub_version());
    mqhub_client_close(c);
    return rc == 0 ? 0 : 1;
}
