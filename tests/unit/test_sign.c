/* test_sign.c - Special:RunJobs signing: the design's test vector, PHP urlencode
 * edge cases, byte-order sorting of the fields and HMAC-SHA1 itself. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "sign.h"
#include "util.h"

#define DESIGN_SECRET "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define DESIGN_CANONICAL                                                                           \
	"async=0&maxjobs=100&maxtime=30&sigexpiry=1700000060&stats=1&tasks=jobs&title=Special"     \
	"%3ARunJobs"
#define DESIGN_HMAC "eccf9dcde9e5eee5b5bb91fcb4b739ff40bd78db"

/* The buffer's text, "" when nothing was ever added (data is still NULL then). */
static const char *text(const struct buf *b)
{
	return b->data != NULL ? b->data : "";
}

/* The design document's vector: fields given unsorted, as the RunJobs client builds
 * them. */
/* A typed batch (issue 11): `type` is signed like every other field and sorts last. */
static void test_typed_vector(void **state)
{
	/* The design's fields, in the order the RunJobs client gives them, and type. */
	struct form_field fields[] = {
		{ "type", "cirrusSearchLinksUpdatePrioritized" },
		{ "title", "Special:RunJobs" },
		{ "tasks", "jobs" },
		{ "maxjobs", "100" },
		{ "maxtime", "30" },
		{ "async", "0" },
		{ "stats", "1" },
		{ "sigexpiry", "1700000060" },
	};
	char hex[SIGN_HEX_LEN + 1];
	struct buf b;

	(void)state;
	buf_init(&b);
	sign_canonical(&b, fields, 8);
	assert_string_equal(text(&b), DESIGN_CANONICAL "&type=cirrusSearchLinksUpdatePrioritized");
	assert_int_equal(sign_hmac_sha1_hex(DESIGN_SECRET, b.data, b.len, hex), 0);
	/* From an independent HMAC-SHA1 over the same string (Python's hmac). */
	assert_string_equal(hex, "676aee0a24afc1d06fbd274c5dff84e631c4978f");
	buf_release(&b);
}

static void test_design_vector(void **state)
{
	struct form_field fields[] = {
		{ "title", "Special:RunJobs" },
		{ "tasks", "jobs" },
		{ "maxjobs", "100" },
		{ "maxtime", "30" },
		{ "async", "0" },
		{ "stats", "1" },
		{ "sigexpiry", "1700000060" },
	};
	char hex[SIGN_HEX_LEN + 1];
	struct buf b;

	(void)state;
	buf_init(&b);
	sign_canonical(&b, fields, sizeof(fields) / sizeof(fields[0]));
	assert_false(b.failed);
	assert_string_equal(text(&b), DESIGN_CANONICAL);
	assert_int_equal(b.len, strlen(DESIGN_CANONICAL));

	memset(hex, 'Z', sizeof(hex));
	assert_int_equal(sign_hmac_sha1_hex(DESIGN_SECRET, b.data, b.len, hex), 0);
	assert_string_equal(hex, DESIGN_HMAC);
	buf_release(&b);
}

/* sign_canonical sorts the caller's array in place (documented in sign.h). */
static void test_canonical_sorts_in_place(void **state)
{
	struct form_field fields[] = {
		{ "title", "Special:RunJobs" },
		{ "tasks", "jobs" },
		{ "async", "0" },
	};
	struct buf b;

	(void)state;
	buf_init(&b);
	sign_canonical(&b, fields, 3);
	assert_string_equal(fields[0].key, "async");
	assert_string_equal(fields[0].value, "0");
	assert_string_equal(fields[1].key, "tasks");
	assert_string_equal(fields[2].key, "title");
	assert_string_equal(fields[2].value, "Special:RunJobs");
	buf_release(&b);
}

/* PHP's urlencode(), which MediaWiki's signature uses (not rawurlencode). */
static const struct {
	const char *in;
	const char *out;
} urlencode_cases[] = {
	{ "a b", "a+b" },
	{ "~", "%7E" },
	{ ":", "%3A" },
	{ "*", "%2A" },
	{ "_.-", "_.-" },
	{ "\xc3\xa9", "%C3%A9" }, /* "é" in UTF-8 */
	{ "+", "%2B" },
	{ "/", "%2F" },
	{ "&=", "%26%3D" },
	{ "", "" },
	{ "AZaz09", "AZaz09" },
	{ "%", "%25" },
	{ "  ", "++" },
	{ "\x01\x7f\xff", "%01%7F%FF" },
	{ "Special:RunJobs", "Special%3ARunJobs" },
	{ "a\nb", "a%0Ab" },
};

static void test_urlencode_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(urlencode_cases) / sizeof(urlencode_cases[0]); i++) {
		struct buf b;
		buf_init(&b);
		sign_urlencode(&b, urlencode_cases[i].in);
		assert_false(b.failed);
		if (strcmp(text(&b), urlencode_cases[i].out) != 0 ||
		    b.len != strlen(urlencode_cases[i].out))
			fail_msg("urlencode case %zu: got \"%s\" (len %zu), want \"%s\"", i,
				 text(&b), b.len, urlencode_cases[i].out);
		buf_release(&b);
	}
}

/* It appends to what the buffer already holds. */
static void test_urlencode_appends(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	buf_adds(&b, "x=");
	sign_urlencode(&b, "a b:c");
	assert_string_equal(b.data, "x=a+b%3Ac");
	buf_release(&b);
}

/* Keys sort in byte order (strcmp, as PHP's ksort on strings): uppercase before '_'
 * before lowercase, and a prefix before its extensions. Values are encoded too. */
static void test_canonical_byte_order(void **state)
{
	struct form_field fields[] = {
		{ "b", "1" }, { "ab", "2" }, { "a", "3" },     { "B", "4" },
		{ "_", "5" }, { "A", "6" },  { "Z", "x y&z" },
	};
	struct buf b;

	(void)state;
	buf_init(&b);
	sign_canonical(&b, fields, sizeof(fields) / sizeof(fields[0]));
	assert_string_equal(text(&b), "A=6&B=4&Z=x+y%26z&_=5&a=3&ab=2&b=1");
	buf_release(&b);
}

static void test_canonical_empty(void **state)
{
	struct form_field none[1] = { { "unused", "x" } };
	struct buf b;

	(void)state;
	buf_init(&b);
	sign_canonical(&b, none, 0);
	assert_int_equal(b.len, 0);
	assert_string_equal(text(&b), "");
	buf_release(&b);
}

/* Plain HMAC-SHA1 vectors, independent of the design's: RFC 2202 test case 2, and the
 * signature of an empty string under an empty key. */
static void test_hmac_known_vectors(void **state)
{
	static const struct {
		const char *key;
		const char *data;
		const char *hex;
	} cases[] = {
		{ "Jefe", "what do ya want for nothing?",
		  "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79" },
		{ "", "", "fbdb1d1b18aa6c08324b7d64b71fb76370690e1d" },
	};
	char hex[SIGN_HEX_LEN + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(sign_hmac_sha1_hex(cases[i].key, cases[i].data,
						    strlen(cases[i].data), hex),
				 0);
		if (strcmp(hex, cases[i].hex) != 0)
			fail_msg("hmac case %zu: got %s, want %s", i, hex, cases[i].hex);
	}
}

/* Only len bytes of data are signed (the canonical string is not re-measured), and the
 * result is 40 lowercase hex digits. */
static void test_hmac_uses_len(void **state)
{
	char a[SIGN_HEX_LEN + 1], b[SIGN_HEX_LEN + 1], c[SIGN_HEX_LEN + 1];

	(void)state;
	assert_int_equal(sign_hmac_sha1_hex("k", "abcdef", 3, a), 0);
	assert_int_equal(sign_hmac_sha1_hex("k", "abc", 3, b), 0);
	assert_int_equal(sign_hmac_sha1_hex("k", "abd", 3, c), 0);
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	assert_int_equal(strlen(a), SIGN_HEX_LEN);
	for (size_t i = 0; i < SIGN_HEX_LEN; i++)
		assert_non_null(strchr("0123456789abcdef", a[i]));
}

/* The secret is a literal string: a different secret gives a different signature. */
static void test_hmac_secret_matters(void **state)
{
	char a[SIGN_HEX_LEN + 1], b[SIGN_HEX_LEN + 1];

	(void)state;
	assert_int_equal(sign_hmac_sha1_hex(DESIGN_SECRET, DESIGN_CANONICAL,
					    strlen(DESIGN_CANONICAL), a),
			 0);
	assert_int_equal(sign_hmac_sha1_hex(DESIGN_SECRET "x", DESIGN_CANONICAL,
					    strlen(DESIGN_CANONICAL), b),
			 0);
	assert_string_equal(a, DESIGN_HMAC);
	assert_string_not_equal(a, b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_design_vector),
		cmocka_unit_test(test_typed_vector),
		cmocka_unit_test(test_canonical_sorts_in_place),
		cmocka_unit_test(test_urlencode_table),
		cmocka_unit_test(test_urlencode_appends),
		cmocka_unit_test(test_canonical_byte_order),
		cmocka_unit_test(test_canonical_empty),
		cmocka_unit_test(test_hmac_known_vectors),
		cmocka_unit_test(test_hmac_uses_len),
		cmocka_unit_test(test_hmac_secret_matters),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
