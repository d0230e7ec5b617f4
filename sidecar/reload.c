/* reload.c - see reload.h. */
#include "reload.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct reload {
	struct config **all; /* every config loaded; the last one is current */
	size_t n;
	uint64_t seen; /* fingerprint of the file content last looked at */
};

/* FNV-1a over the file's bytes; 0 when it cannot be read (so "unreadable" is one
 * state, reported once). */
static uint64_t fingerprint(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint64_t h = 1469598103934665603ULL;
	int c;

	if (f == NULL)
		return 0;
	while ((c = getc(f)) != EOF) {
		h ^= (unsigned char)c;
		h *= 1099511628211ULL;
	}
	fclose(f);
	return h ? h : 1;
}

struct reload *reload_new(struct config *initial)
{
	struct reload *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->all = malloc(sizeof(*r->all));
	if (r->all == NULL) {
		free(r);
		return NULL;
	}
	r->all[0] = initial;
	r->n = 1;
	r->seen = fingerprint(initial->path);
	return r;
}

void reload_free(struct reload *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		config_free(r->all[i]);
	free(r->all);
	free(r);
}

const struct config *reload_current(const struct reload *r)
{
	return r->all[r->n - 1];
}

bool reload_file_changed(struct reload *r)
{
	return fingerprint(reload_current(r)->path) != r->seen;
}

/* The effective configuration as text (secrets masked), for the diff. */
static char *printed(const struct config *cfg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	config_print(cfg, f);
	fclose(f);
	return text;
}

/* "[section] key" of every line of b not in a: what the reload changes. */
static void changed_keys(const char *a, const char *b, struct buf *out)
{
	char section[64] = "";
	const char *line = b;

	while (line != NULL && *line) {
		const char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line) : strlen(line);
		if (n > 2 && line[0] == '[') {
			snprintf(section, sizeof(section), "%.*s", (int)(n - 2), line + 1);
		} else if (n > 0 && line[0] != ';' && line[0] != ' ') {
			/* The line, whole, in a (a KEY_TEXT value's later lines are indented). */
			const char *p = a;
			bool found = false;
			while (!found && (p = strstr(p, "\n")) != NULL) {
				p++;
				found = strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0');
			}
			if (!found) {
				const char *eq = memchr(line, '=', n);
				int klen = eq ? (int)(eq - line) : (int)n;
				while (klen > 0 && line[klen - 1] == ' ')
					klen--;
				buf_addf(out, "%s[%s] %.*s", out->len ? ", " : "", section, klen,
					 line);
			}
		}
		line = end ? end + 1 : NULL;
	}
}

static void log_refused(const char *path, const char *why, const char *errors)
{
	struct log_line l;

	log_begin(&l, LOG_ERROR, "configuration reload refused: the file has errors");
	log_str(&l, "config", path);
	log_str(&l, "trigger", why);
	log_str(&l, "errors", errors);
	log_str(&l, "next", "the configuration in force stays; fix the file");
	log_end(&l);
}

/* Whether " name" is a word of a shape's sections. */
static bool has_section(const char *sections, const char *name, size_t n)
{
	for (const char *p = sections; (p = strchr(p, ' ')) != NULL; p++)
		if (strncmp(p + 1, name, n) == 0 && (p[n + 1] == ' ' || p[n + 1] == '\0'))
			return true;
	return false;
}

bool reload_looks_cut(const struct config_file_shape *cur, const struct config_file_shape *next,
		      char *why, size_t len)
{
	struct buf gone;
	bool cut = false;

	if (next->keys == 0 && cur->keys > 0) {
		snprintf(why, len,
			 "the file sets no key (the one in force set %d): empty, or "
			 "caught while being written",
			 cur->keys);
		return true;
	}
	if (!next->final_newline && cur->final_newline) {
		snprintf(why, len,
			 "its last line (%d) has no newline, though the file in force "
			 "ended with one: cut off mid-line while being written",
			 next->lines);
		return true;
	}
	buf_init(&gone);
	for (const char *p = cur->sections; (p = strchr(p, ' ')) != NULL;) {
		const char *name = p + 1, *end = strchr(name, ' ');
		size_t n = end ? (size_t)(end - name) : strlen(name);
		if (!has_section(next->sections, name, n))
			buf_addf(&gone, "%s[%.*s]", gone.len ? ", " : "", (int)n, name);
		p = name + n;
	}
	if (gone.len > 0) {
		snprintf(why, len,
			 "%s %s gone from the file, which the file in force had: cut off "
			 "while being written? (to return a section to its defaults, keep its header)",
			 gone.data, strchr(gone.data, ',') ? "are" : "is");
		cut = true;
	}
	buf_release(&gone);
	return cut;
}

const struct config *reload_now(struct reload *r, const char *why)
{
	const struct config *cur = reload_current(r);
	struct config *next = NULL, **grown;
	struct buf errors, kept, changed;
	char *before = NULL, *after = NULL, cut[512];
	struct log_line l;
	int rc;

	r->seen = fingerprint(cur->path);
	buf_init(&errors);
	buf_init(&kept);
	buf_init(&changed);
	rc = config_load(cur->path, &next, &errors);
	if (rc == 0 && reload_looks_cut(&cur->shape, &next->shape, cut, sizeof(cut))) {
		log_begin(&l, LOG_ERROR, "configuration reload refused: the file looks cut short");
		log_str(&l, "config", cur->path);
		log_str(&l, "trigger", why);
		log_str(&l, "why", cut);
		log_str(&l, "next",
			"the configuration in force stays; a complete file is loaded "
			"when it changes again");
		log_end(&l);
		config_free(next);
		next = NULL;
		goto out;
	}
	if (rc == 0)
		rc = config_keep_static(next, cur, &kept, &errors);
	if (rc != 0) {
		/* One line per problem in the file, as at start-up, joined for one log line. */
		while (errors.len > 0 && errors.data[errors.len - 1] == '\n')
			errors.data[--errors.len] = '\0';
		log_refused(cur->path, why, errors.data ? errors.data : "out of memory");
		config_free(next);
		next = NULL;
		goto out;
	}
	before = printed(cur);
	after = printed(next);
	if (before != NULL && after != NULL)
		changed_keys(before, after, &changed);
	if (changed.len == 0 && kept.len == 0) {
		log_begin(&l, LOG_INFO, "configuration reloaded: nothing changed");
		log_str(&l, "trigger", why);
		log_end(&l);
		config_free(next);
		next = NULL;
		goto out;
	}
	grown = realloc(r->all, (r->n + 1) * sizeof(*r->all));
	if (grown == NULL) {
		log_refused(cur->path, why, "out of memory");
		config_free(next);
		next = NULL;
		goto out;
	}
	r->all = grown;
	r->all[r->n++] = next;
	log_begin(&l, LOG_INFO, "configuration reloaded");
	log_str(&l, "trigger", why);
	log_str(&l, "changed", changed.len ? changed.data : "(none)");
	log_str(&l, "next",
		"limits apply from each worker's next batch; leases and batches in "
		"flight are kept");
	log_end(&l);
	if (kept.len > 0) {
		log_begin(&l, LOG_WARN, "configuration reload: these keys change only on restart");
		log_str(&l, "keys", kept.data);
		log_str(&l, "next", "they keep their old values until the next start");
		log_end(&l);
	}
out:
	free(before);
	free(after);
	buf_release(&errors);
	buf_release(&kept);
	buf_release(&changed);
	return next;
}
