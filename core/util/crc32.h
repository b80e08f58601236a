/* crc32.h: the CRC-32 raft_uv puts in its segment files (crc32.c) — leaf
 * code. Polynomial 0x04C11DB7, most significant bit first, no reflection,
 * initial value and final xor 0 (libiberty's crc32, raft's byteCrc32()):
 * what core/raft/logcheck.c needs to verify raft's files, and what
 * core/raft/snapshot.c puts in the checksum trailer of a snapshot.
 */
#ifndef MQHUB_UTIL_CRC32_H
#define MQHUB_UTIL_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* The checksum of @n bytes at @p continuing from @crc (0 to begin), so
 * crc32_raft(crc32_raft(0, a, n), b, m) is the checksum of a followed by b.
 * Any thread. */
uint32_t crc32_raft(uint32_t crc, const void *p, size_t n);

#endif
