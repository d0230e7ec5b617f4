/* sign.c - see sign.h. */
#include "sign.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

void sign_urlencode(struct buf *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '.' || c == '-') {
			buf_add(out, &c, 1);
		} else if (c == ' ') {
			buf_add(out, "+", 1);
		} else {
			char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
			buf_add(out, esc, 3);
		}
	}
}

static int by_key(const void *a, const void *b)
{
	return strcmp(((const struct form_field *)a)->key, ((const struct form_field *)b)->key);
}

void sign_canonical(struct buf *out, struct form_field *fields, size_t n)
{
	qsort(fields, n, sizeof(*fields), by_key);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			buf_add(out, "&", 1);
		sign_urlencode(out, fields[i].key);
		buf_add(out, "=", 1);
		sign_urlencode(out, fields[i].value);
	}
}

int sign_hmac_sha1_hex(const char *secret, const char *data, size_t len, char hex[SIGN_HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)data, len, md,
		 &mdlen) == NULL ||
	    mdlen * 2 != SIGN_HEX_LEN)
		return -EIO;
	for (unsigned int i = 0; i < mdlen; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[SIGN_HEX_LEN] = '\0';
	return 0;
}
