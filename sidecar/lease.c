/* lease.c - see lease.h. */
#include "lease.h"

int64_t lease_trusted_until(int64_t sent_ms, int ttl_s, int safety_margin_s)
{
	return sent_ms + (int64_t)(ttl_s - safety_margin_s) * 1000;
}

bool lease_covers(int64_t now, int64_t trusted_until, int64_t need_ms)
{
	return trusted_until - now >= need_ms;
}

bool lease_renew_due(int64_t now, int64_t confirmed_ms, int64_t every_ms)
{
	return now - confirmed_ms >= every_ms;
}
