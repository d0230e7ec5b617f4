/* sign.h - Special:RunJobs request signing, exactly as MediaWiki checks it.
 *
 * MediaWiki (SpecialRunJobs::getQuerySignature) sorts the fields by key, joins them
 * with PHP's urlencode as "k=v&k=v" and takes HMAC-SHA1 with $wgSecretKey as a literal
 * string, in lowercase hex. Leaf module: libc and libcrypto only. */
#ifndef JD_SIGN_H
#define JD_SIGN_H

#include <stddef.h>

#include "util.h"

struct form_field {
	const char *key;
	const char *value;
};

/* Appends PHP urlencode(s): keeps A-Za-z0-9 and "_.-", space becomes '+', every other
 * byte (UTF-8 bytes included) becomes %XX in uppercase hex. */
void sign_urlencode(struct buf *out, const char *s);

/* Appends the canonical string: fields sorted by key (byte order), urlencoded, joined
 * with '&'. Sorts `fields` in place. */
void sign_canonical(struct buf *out, struct form_field *fields, size_t n);

#define SIGN_HEX_LEN 40

/* HMAC-SHA1 of data under secret, as 40 lowercase hex digits plus NUL.
 * Returns 0 or -EIO. */
int sign_hmac_sha1_hex(const char *secret, const char *data, size_t len, char hex[SIGN_HEX_LEN + 1]);

#endif
