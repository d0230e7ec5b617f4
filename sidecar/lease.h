/* lease.h - when this process may trust a lease the coordination database granted.
 *
 * The database decides who holds a lease (coord.h); this module holds the local rule
 * for acting on one, the same for wiki leases (sched.c) and the scanner lease
 * (scanner.c):
 * - trust runs from the moment the acquire or renew statement was SENT (the database's
 *   expiry is later than that) for lease_ttl - safety_margin;
 * - work that could outlast the trust does not start;
 * - a renew is due once `every` has passed since the last confirmation.
 * Pure functions of monotonic times in ms; leaf module (libc only), unit-tested. */
#ifndef JD_LEASE_H
#define JD_LEASE_H

#include <stdbool.h>
#include <stdint.h>

/* The end of the trust in a lease confirmed by a statement sent at sent_ms. */
int64_t lease_trusted_until(int64_t sent_ms, int ttl_s, int safety_margin_s);

/* Whether the trust (until trusted_until) lasts at least need_ms more from now.
 * need_ms 0: whether it is trusted at all. */
bool lease_covers(int64_t now, int64_t trusted_until, int64_t need_ms);

/* Whether the lease confirmed at confirmed_ms is due for a renew at now. */
bool lease_renew_due(int64_t now, int64_t confirmed_ms, int64_t every_ms);

#endif
