/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "secrets.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/base64.h"

void secret_wipe_free(void *p, size_t n)
{
	if (!p)
		return;
	explicit_bzero(p, n);
	free(p);
}

void buf_wipe(struct buf *b)
{
	if (b->p)
		explicit_bzero(b->p, b->cap);
	buf_fini(b);
}

static bool name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > SECRET_NAME_MAX || isdigit((unsigned char)name[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '_')
			return false;
	return true;
}

/* ---- the forms a value takes in a response --------------------------------------------- */

/* Add one form (a copy of b) to s unless it is empty, there already, or the table is full. */
static int form_add(struct secret *s, unsigned idx, struct buf *b)
{
	size_t n = buf_used(b);
	if (!n)
		return 0;
	for (unsigned i = 0; i < s->nforms; i++)
		if (s->forms[i].n == n && !memcmp(s->forms[i].p, buf_head(b), n))
			return 0;
	if (s->nforms >= SECRET_MAX_FORMS)
		return 0;
	uint8_t *c = malloc(n);
	if (!c)
		return -ENOMEM;
	memcpy(c, buf_head(b), n);
	s->forms[s->nforms++] = (struct scrub_form){ .p = c, .n = n, .secret = idx };
	return 0;
}

static void put_pct(struct buf *b, const uint8_t *v, size_t n, const char *hex)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = v[i];
		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			buf_put_u8(b, c);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			buf_append(b, e, 3);
		}
	}
}

/* JSON string escaping as serialisers write it; slash: "\/" too (PHP and others). */
static void put_json(struct buf *b, const uint8_t *v, size_t n, bool slash)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = v[i];
		char e[8];
		if (c == '"' || c == '\\' || (slash && c == '/')) {
			e[0] = '\\', e[1] = (char)c;
			buf_append(b, e, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(e, sizeof(e), "\\u%04x", c);
			buf_append(b, e, 6);
		} else {
			buf_put_u8(b, c);
		}
	}
}

/* base64 of v (url: the URL-safe alphabet; pad: keep '='). */
static int put_b64(struct buf *b, const uint8_t *v, size_t n, bool url, bool pad)
{
	size_t start = buf_used(b);
	if (base64_encode(b, v, n) < 0)
		return -ENOMEM;
	uint8_t *q = buf_head(b) + start;
	size_t k = buf_used(b) - start;
	while (!pad && k && q[k - 1] == '=')
		k--, b->len--;
	for (size_t i = 0; url && i < k; i++)
		q[i] = q[i] == '+' ? '-' : q[i] == '/' ? '_' : q[i];
	return 0;
}

/* Every form of secret idx's value (see struct secret). */
static int forms_build(struct secret *s, unsigned idx)
{
	const uint8_t *v = s->value;
	size_t n = s->vlen;
	struct buf b = { 0 };
	int r = 0;
#define FORM(expr)                                      \
	do {                                            \
		buf_wipe(&b);                           \
		expr;                                   \
		if (r == 0 && form_add(s, idx, &b) < 0) \
			r = -ENOMEM;                    \
	} while (0)
	FORM(buf_append(&b, v, n));
	FORM(put_pct(&b, v, n, "0123456789ABCDEF"));
	FORM(put_pct(&b, v, n, "0123456789abcdef"));
	FORM(put_json(&b, v, n, false));
	FORM(put_json(&b, v, n, true));
	for (int url = 0; url < 2; url++) {
		FORM(put_b64(&b, v, n, url, true));
		FORM(put_b64(&b, v, n, url, false));
		/*
		 * Inside longer base64 the value starts at offset 0, 1 or 2 of a 3-byte group;
		 * the characters that depend on the value alone are those of its whole groups.
		 */
		for (size_t skip = 0; skip < 3; skip++) {
			size_t whole = n > skip ? (n - skip) / 3 * 3 : 0;
			if (whole / 3 * 4 >= SCRUB_MIN_CORE)
				FORM(put_b64(&b, v + skip, whole, url, false));
		}
	}
#undef FORM
	buf_wipe(&b);
	return r;
}

/* The first-byte chains over every secret's forms, and the longest form. */
static void forms_index(struct secrets *ss)
{
	memset(ss->first, 0, sizeof(ss->first));
	ss->max_form = 0;
	for (unsigned i = ss->n; i-- > 0;) {
		struct secret *s = &ss->s[i];
		for (unsigned k = s->nforms; k-- > 0;) {
			struct scrub_form *f = &s->forms[k];
			f->next = ss->first[f->p[0]];
			ss->first[f->p[0]] = 1 + (int)(i * SECRET_MAX_FORMS + k);
			if (f->n > ss->max_form)
				ss->max_form = f->n;
		}
	}
}

static void forms_free(struct secret *s)
{
	for (unsigned k = 0; k < s->nforms; k++)
		secret_wipe_free(s->forms[k].p, s->forms[k].n);
	s->nforms = 0;
}

int secrets_add(struct secrets *ss, const char *name, const uint8_t *value, size_t vlen,
		const char *hosts, char *err, size_t errn)
{
	if (!name_valid(name)) {
		snprintf(err, errn,
			 "secret name %.40s: use letters, digits and '_' (an environment "
			 "variable name, at most %d characters)",
			 name, SECRET_NAME_MAX);
		return -EINVAL;
	}
	if (vlen == 0 || vlen > SECRET_VALUE_MAX) {
		snprintf(err, errn, "secret %s: the value must be 1 to %d bytes", name,
			 SECRET_VALUE_MAX);
		return -EINVAL;
	}
	if (memchr(value, 0, vlen) || memchr(value, '\r', vlen) || memchr(value, '\n', vlen)) {
		snprintf(err, errn,
			 "secret %s: the value may not contain NUL, CR or LF (it is sent in "
			 "HTTP headers)",
			 name);
		return -EINVAL;
	}
	for (unsigned i = 0; i < ss->n; i++) {
		if (!strcmp(ss->s[i].name, name)) {
			snprintf(err, errn, "secret %s is given twice", name);
			return -EEXIST;
		}
	}
	if (ss->n >= SECRETS_MAX) {
		snprintf(err, errn, "too many secrets (at most %d)", SECRETS_MAX);
		return -ENOSPC;
	}
	struct secret *s = &ss->s[ss->n];
	memset(s, 0, sizeof(*s));
	const char *h = hosts;
	while (*h) {
		size_t k = strcspn(h, ",");
		char item[POLICY_RULE_MAX + 2];
		if (k == 0 || k >= sizeof(item) || s->nhosts >= SECRET_MAX_HOSTS) {
			snprintf(err, errn,
				 "secret %s: expected 1 to %d host names or globs after '@', "
				 "separated by commas",
				 name, SECRET_MAX_HOSTS);
			return -EINVAL;
		}
		memcpy(item, h, k);
		item[k] = 0;
		if (policy_glob_normalise(item, s->hosts[s->nhosts], sizeof(s->hosts[0])) < 0) {
			snprintf(err, errn,
				 "secret %s: %.100s is not a host name or glob (api.x.com, "
				 "*.x.com)",
				 name, item);
			return -EINVAL;
		}
		s->nhosts++;
		h += k;
		if (*h == ',')
			h++;
	}
	if (!s->nhosts) {
		snprintf(err, errn, "secret %s: no host given (NAME[=VALUE]@HOST[,HOST...])", name);
		return -EINVAL;
	}
	uint8_t rnd[16];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		snprintf(err, errn, "secret %s: no randomness for the placeholder", name);
		return -EIO;
	}
	int k = snprintf(s->placeholder, sizeof(s->placeholder), "%s", SECRET_PREFIX);
	for (size_t i = 0; i < sizeof(rnd); i++)
		k += snprintf(s->placeholder + k, sizeof(s->placeholder) - (size_t)k, "%02x",
			      rnd[i]);
	s->value = malloc(vlen);
	if (!s->value) {
		snprintf(err, errn, "out of memory");
		return -ENOMEM;
	}
	memcpy(s->value, value, vlen);
	s->vlen = vlen;
	snprintf(s->name, sizeof(s->name), "%s", name);
	if (forms_build(s, ss->n) < 0) {
		forms_free(s);
		secret_wipe_free(s->value, s->vlen);
		memset(s, 0, sizeof(*s));
		snprintf(err, errn, "out of memory");
		return -ENOMEM;
	}
	if (vlen > ss->max_vlen)
		ss->max_vlen = vlen;
	ss->n++;
	forms_index(ss);
	return 0;
}

const struct secret *secrets_aws(const struct secrets *ss, enum secret_kind kind)
{
	for (unsigned i = 0; ss && i < ss->n; i++)
		if (ss->s[i].kind == kind)
			return &ss->s[i];
	return NULL;
}

/* Forget the secrets from index n on (a credential added half-way). */
static void secrets_truncate(struct secrets *ss, unsigned n)
{
	while (ss->n > n) {
		struct secret *s = &ss->s[--ss->n];
		secret_wipe_free(s->value, s->vlen);
		forms_free(s);
		explicit_bzero(s, sizeof(*s));
	}
	forms_index(ss);
}

int secrets_add_aws(struct secrets *ss, const uint8_t *id, size_t idlen, const uint8_t *key,
		    size_t klen, const uint8_t *token, size_t tlen, const char *hosts, char *err,
		    size_t errn)
{
	if (secrets_aws(ss, SECRET_AWS_KEY_ID)) {
		snprintf(err, errn, "only one AWS credential per sandbox (aws is given twice)");
		return -EEXIST;
	}
	/* A key id goes into Credential=ID/...: SigV4 parsers take letters and digits. */
	bool id_ok = idlen && idlen <= 128;
	for (size_t i = 0; i < idlen; i++)
		id_ok = id_ok && isalnum(id[i]);
	if (!id_ok) {
		snprintf(err, errn,
			 "aws: the access key id must be 1 to 128 letters and digits (AKIA...)");
		return -EINVAL;
	}
	unsigned before = ss->n;
	static const char *const names[] = { "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
					     "AWS_SESSION_TOKEN" };
	static const enum secret_kind kinds[] = { SECRET_AWS_KEY_ID, SECRET_AWS_SECRET_KEY,
						  SECRET_AWS_TOKEN };
	const uint8_t *v[] = { id, key, token };
	size_t n[] = { idlen, klen, tlen };
	for (int i = 0; i < 3; i++) {
		if (i == 2 && !tlen)
			break;
		int r = secrets_add(ss, names[i], v[i], n[i], hosts, err, errn);
		if (r < 0) {
			secrets_truncate(ss, before);
			return r;
		}
		ss->s[ss->n - 1].kind = kinds[i];
	}
	return 0;
}

/* Read at most max bytes of a file into out (max + 1 bytes); -EFBIG beyond. */
static int read_file_max(const char *path, uint8_t *out, size_t max, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t n = 0;
	for (;;) {
		ssize_t k = read(fd, out + n, max + 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = -errno;
			close(fd);
			return e;
		}
		if (k == 0)
			break;
		n += (size_t)k;
		if (n > max) {
			close(fd);
			return -EFBIG;
		}
	}
	close(fd);
	*len = n;
	return 0;
}

/* Read a secret file: at most SECRET_VALUE_MAX bytes, one final newline dropped. */
static int read_secret_file(const char *path, uint8_t *out, size_t *len)
{
	size_t n;
	int r = read_file_max(path, out, SECRET_VALUE_MAX, &n);
	if (r < 0)
		return r;
	if (n && out[n - 1] == '\n')
		n--;
	if (n && out[n - 1] == '\r')
		n--;
	*len = n;
	return 0;
}

/* The three parts of an AWS credential while it is read (values wiped and freed). */
struct aws_cred {
	char *v[3]; /* key id, secret key, session token */
};

static void aws_cred_fini(struct aws_cred *c)
{
	for (int i = 0; i < 3; i++)
		if (c->v[i])
			secret_wipe_free(c->v[i], strlen(c->v[i]));
}

static int aws_cred_add(struct secrets *ss, struct aws_cred *c, const char *hosts, char *err,
			size_t errn)
{
	const char *t = c->v[2] ? c->v[2] : "";
	return secrets_add_aws(ss, (const uint8_t *)c->v[0], strlen(c->v[0]),
			       (const uint8_t *)c->v[1], strlen(c->v[1]), (const uint8_t *)t,
			       strlen(t), hosts, err, errn);
}

static int aws_from_env(struct secrets *ss, const char *hosts, char *err, size_t errn)
{
	static const char *const vars[] = { "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
					    "AWS_SESSION_TOKEN" };
	struct aws_cred c = { 0 };
	int r = 0;
	for (int i = 0; i < 3 && r == 0; i++) {
		const char *e = getenv(vars[i]);
		if (!e && i < 2) {
			snprintf(err, errn,
				 "--secret aws: $%s is not set (export the credential, or use "
				 "--secret-file aws=~/.aws/credentials@HOSTS)",
				 vars[i]);
			r = -EINVAL;
		} else if (e && !(c.v[i] = strdup(e))) {
			r = -ENOMEM;
		}
	}
	if (r == 0)
		r = aws_cred_add(ss, &c, hosts, err, errn);
	aws_cred_fini(&c);
	return r;
}

/*
 * An AWS credentials file (INI): the keys aws_access_key_id, aws_secret_access_key and
 * aws_session_token of section [profile] (or [profile NAME], the config file's spelling); a
 * file without any section gives its keys whole.
 */
static int aws_parse_file(char *text, const char *profile, struct aws_cred *c)
{
	static const char *const keys[] = { "aws_access_key_id", "aws_secret_access_key",
					    "aws_session_token" };
	bool sections = false, in = true;
	for (char *line = text, *next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		line[strcspn(line, "\r")] = 0;
		while (*line == ' ' || *line == '\t')
			line++;
		if (*line == '[') {
			char *close = strchr(line, ']');
			if (!close)
				continue;
			*close = 0;
			char *name = line + 1;
			if (!strncmp(name, "profile ", 8))
				name += 8;
			if (!sections) { /* keys before the first section are not a profile's */
				sections = true;
				aws_cred_fini(c);
				*c = (struct aws_cred){ 0 };
			}
			in = !strcmp(name, profile);
			continue;
		}
		char *eq = strchr(line, '=');
		if (!in || !eq || *line == '#' || *line == ';')
			continue;
		char *k_end = eq;
		while (k_end > line && (k_end[-1] == ' ' || k_end[-1] == '\t'))
			k_end--;
		*k_end = 0;
		char *v = eq + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		size_t vl = strlen(v);
		while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			v[--vl] = 0;
		for (int i = 0; i < 3; i++) {
			if (strcasecmp(line, keys[i]) || c->v[i])
				continue;
			if (!(c->v[i] = strdup(v)))
				return -ENOMEM;
		}
	}
	return 0;
}

static int aws_from_file(struct secrets *ss, const char *spec, char *err, size_t errn)
{
	const char *eq = strchr(spec, '='), *at = strrchr(spec, '@');
	char profile[128] = "default", path[4096];
	if (!eq || !at || at < eq) {
		snprintf(err, errn, "--secret-file: expected aws[:PROFILE]=PATH@HOST[,HOST...]");
		return -EINVAL;
	}
	if (spec[3] == ':')
		snprintf(profile, sizeof(profile), "%.*s", (int)(eq - spec - 4), spec + 4);
	snprintf(path, sizeof(path), "%.*s", (int)(at - eq - 1), eq + 1);
	char *text = malloc(SECRET_AWS_FILE_MAX + 1);
	struct aws_cred c = { 0 };
	size_t n = 0;
	int r = text ? read_file_max(path, (uint8_t *)text, SECRET_AWS_FILE_MAX, &n) : -ENOMEM;
	if (r < 0) {
		snprintf(err, errn, "--secret-file aws: cannot read %s: %s", path,
			 r == -EFBIG ? "larger than 64 KiB" : strerror(-r));
		goto out;
	}
	text[n] = 0;
	r = aws_parse_file(text, profile, &c);
	if (r == 0 && (!c.v[0] || !c.v[1])) {
		snprintf(err, errn,
			 "--secret-file aws: %s has no aws_access_key_id and aws_secret_access_key "
			 "for profile %s",
			 path, profile);
		r = -EINVAL;
	}
	if (r == 0)
		r = aws_cred_add(ss, &c, at + 1, err, errn);
out:
	aws_cred_fini(&c);
	if (text)
		secret_wipe_free(text, SECRET_AWS_FILE_MAX + 1);
	return r;
}

int secrets_parse_flag(struct secrets *ss, const char *spec, bool from_file, char *err, size_t errn)
{
	if (!from_file && !strncmp(spec, "aws@", 4))
		return aws_from_env(ss, spec + 4, err, errn);
	if (from_file && (!strncmp(spec, "aws=", 4) || !strncmp(spec, "aws:", 4)))
		return aws_from_file(ss, spec, err, errn);
	const char *flag = from_file ? "--secret-file" : "--secret";
	const char *at = strrchr(spec, '@');
	const char *eq = strchr(spec, '=');
	if (eq && at && eq > at)
		eq = NULL;
	size_t nlen = (size_t)((eq ? eq : at ? at : spec + strlen(spec)) - spec);
	char name[SECRET_NAME_MAX + 1];
	if (!at || nlen == 0 || nlen > SECRET_NAME_MAX || (from_file && !eq)) {
		snprintf(err, errn, "%s: expected %s", flag,
			 from_file ? "NAME=PATH@HOST[,HOST...]" : "NAME[=VALUE]@HOST[,HOST...]");
		return -EINVAL;
	}
	memcpy(name, spec, nlen);
	name[nlen] = 0;
	if (!strcmp(name, "aws")) {
		snprintf(err, errn, "%s aws: an AWS credential is %s", flag,
			 from_file ? "--secret-file aws[:PROFILE]=PATH@HOST[,HOST...]"
				   : "--secret aws@HOST[,HOST...] (from $AWS_ACCESS_KEY_ID, "
				     "$AWS_SECRET_ACCESS_KEY, $AWS_SESSION_TOKEN)");
		return -EINVAL;
	}
	uint8_t *val = malloc(SECRET_VALUE_MAX + 1);
	size_t vlen = 0;
	int r = 0;
	if (!val) {
		snprintf(err, errn, "out of memory");
		return -ENOMEM;
	}
	if (from_file) {
		char path[4096];
		snprintf(path, sizeof(path), "%.*s", (int)(at - eq - 1), eq + 1);
		r = read_secret_file(path, val, &vlen);
		if (r < 0) {
			snprintf(err, errn, "%s %s: cannot read %s: %s", flag, name, path,
				 r == -EFBIG ? "larger than 8192 bytes" : strerror(-r));
			goto out;
		}
	} else if (eq) {
		vlen = (size_t)(at - eq - 1);
		memcpy(val, eq + 1, vlen < SECRET_VALUE_MAX + 1 ? vlen : SECRET_VALUE_MAX + 1);
	} else {
		const char *env = getenv(name);
		if (!env) {
			snprintf(err, errn,
				 "%s %s: $%s is not set (give the value as NAME=VALUE@HOST or "
				 "export %s)",
				 flag, name, name, name);
			r = -EINVAL;
			goto out;
		}
		vlen = strlen(env);
		memcpy(val, env, vlen < SECRET_VALUE_MAX + 1 ? vlen : SECRET_VALUE_MAX + 1);
	}
	char e2[300];
	r = secrets_add(ss, name, val, vlen, at + 1, e2, sizeof(e2));
	if (r < 0)
		snprintf(err, errn, "%s: %s", flag, e2);
out:
	secret_wipe_free(val, SECRET_VALUE_MAX + 1);
	return r;
}

void secrets_clear(struct secrets *ss)
{
	if (!ss)
		return;
	for (unsigned i = 0; i < ss->n; i++) {
		secret_wipe_free(ss->s[i].value, ss->s[i].vlen);
		forms_free(&ss->s[i]);
	}
	explicit_bzero(ss, sizeof(*ss));
}

int secrets_allow_hosts(const struct secrets *ss, struct policy *p)
{
	for (unsigned i = 0; ss && i < ss->n; i++)
		for (unsigned j = 0; j < ss->s[i].nhosts; j++) {
			int r = policy_add(p, ss->s[i].hosts[j]);
			if (r < 0)
				return r;
		}
	return 0;
}

bool secret_host_ok(const struct secret *s, const char *host)
{
	if (s->kind == SECRET_AWS_SECRET_KEY)
		return false;
	for (unsigned i = 0; i < s->nhosts; i++)
		if (policy_glob_matches(s->hosts[i], host))
			return true;
	return false;
}

const struct secret *secrets_find_placeholder(const struct secrets *ss, const uint8_t *p, size_t n)
{
	const size_t pl = sizeof(SECRET_PREFIX) - 1;
	const uint8_t *q = p, *end = p + n;
	while (ss && ss->n && (q = memmem(q, (size_t)(end - q), SECRET_PREFIX, pl))) {
		for (unsigned i = 0; i < ss->n; i++)
			if ((size_t)(end - q) >= SECRET_PLACEHOLDER_LEN &&
			    !memcmp(q, ss->s[i].placeholder, SECRET_PLACEHOLDER_LEN))
				return &ss->s[i];
		q += pl;
	}
	return NULL;
}

/* Every secret whose placeholder is in p must be allowed to go to host; else the first. */
static const struct secret *first_leak(const struct secrets *ss, const char *host, const uint8_t *p,
				       size_t n)
{
	const size_t pl = sizeof(SECRET_PREFIX) - 1;
	const uint8_t *q = p, *end = p + n;
	while ((q = memmem(q, (size_t)(end - q), SECRET_PREFIX, pl))) {
		for (unsigned i = 0; i < ss->n; i++)
			if ((size_t)(end - q) >= SECRET_PLACEHOLDER_LEN &&
			    !memcmp(q, ss->s[i].placeholder, SECRET_PLACEHOLDER_LEN) &&
			    !secret_host_ok(&ss->s[i], host))
				return &ss->s[i];
		q += pl;
	}
	return NULL;
}

static int put_url_encoded(struct buf *out, const uint8_t *v, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		uint8_t c = v[i];
		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			if (buf_put_u8(out, c) < 0)
				return -ENOMEM;
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			if (buf_append(out, e, 3) < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

/* Copy p to out with the placeholders of secrets allowed for host replaced; counts in *nsub. */
static int subst(const struct secrets *ss, const char *host, const uint8_t *p, size_t n, bool url,
		 struct buf *out, int *nsub)
{
	const size_t pl = sizeof(SECRET_PREFIX) - 1;
	const uint8_t *q = p, *end = p + n;
	while (q < end) {
		const uint8_t *m = memmem(q, (size_t)(end - q), SECRET_PREFIX, pl);
		const struct secret *hit = NULL;
		if (m && (size_t)(end - m) >= SECRET_PLACEHOLDER_LEN)
			for (unsigned i = 0; i < ss->n && !hit; i++)
				if (!memcmp(m, ss->s[i].placeholder, SECRET_PLACEHOLDER_LEN) &&
				    secret_host_ok(&ss->s[i], host))
					hit = &ss->s[i];
		const uint8_t *upto = m ? m + (hit ? 0 : pl) : end;
		if (buf_append(out, q, (size_t)(upto - q)) < 0)
			return -ENOMEM;
		q = upto;
		if (hit) {
			int r = url ? put_url_encoded(out, hit->value, hit->vlen)
				    : buf_append(out, hit->value, hit->vlen);
			if (r < 0)
				return -ENOMEM;
			q += SECRET_PLACEHOLDER_LEN;
			(*nsub)++;
		}
	}
	return 0;
}

/* The base64 token of a header value when the header is "Authorization: Basic TOKEN", or NULL. */
static const uint8_t *basic_token(const uint8_t *name, size_t nlen, const uint8_t *v, size_t vlen,
				  size_t *tlen)
{
	if (nlen != 13 || strncasecmp((const char *)name, "authorization", 13) || vlen < 6 ||
	    strncasecmp((const char *)v, "basic ", 6))
		return NULL;
	const uint8_t *end = v + vlen;
	v += 6;
	while (v < end && *v == ' ')
		v++;
	*tlen = (size_t)(end - v);
	return v;
}

/* Every placeholder inside a Basic credential must be allowed for host; else the first. */
static const struct secret *basic_leak(const struct secrets *ss, const char *host,
				       const uint8_t *tok, size_t tl)
{
	const struct secret *leak = NULL;
	struct buf dec = { 0 };
	if (base64_decode(&dec, (const char *)tok, tl) == 0)
		leak = first_leak(ss, host, buf_head(&dec), buf_used(&dec));
	buf_wipe(&dec);
	return leak;
}

/*
 * The value "Basic " + the credential tok with placeholders replaced when the decoded
 * credential has any for host (1), else nothing is appended (0).
 */
static int rewrite_basic(const struct secrets *ss, const char *host, const uint8_t *tok, size_t tl,
			 struct buf *out, int *nsub, struct scrub *rec)
{
	struct buf dec = { 0 }, plain = { 0 }, enc = { 0 };
	int before = *nsub, r = 0;
	if (base64_decode(&dec, (const char *)tok, tl) < 0)
		goto out;
	if (subst(ss, host, buf_head(&dec), buf_used(&dec), false, &plain, nsub) < 0 ||
	    base64_encode(&enc, buf_head(&plain), buf_used(&plain)) < 0) {
		r = -ENOMEM;
		goto out;
	}
	if (*nsub == before)
		goto out;
	/* An upstream that echoes the token would hand the value out. */
	const struct secret *first = secrets_find_placeholder(ss, buf_head(&dec), buf_used(&dec));
	if (rec && first)
		scrub_record(rec, (unsigned)(first - ss->s), buf_head(&enc), buf_used(&enc), tok,
			     tl);
	buf_append(out, "Basic ", 6);
	buf_append(out, buf_head(&enc), buf_used(&enc));
	r = 1;
out:
	buf_wipe(&dec);
	buf_wipe(&plain);
	buf_wipe(&enc);
	return r;
}

int secrets_rewrite_field(const struct secrets *ss, const char *host, const uint8_t *name,
			  size_t nlen, const uint8_t *value, size_t vlen, bool url, struct buf *out,
			  const struct secret **leak, struct scrub *rec)
{
	size_t tl = 0, start = buf_used(out);
	const uint8_t *tok = basic_token(name, nlen, value, vlen, &tl);
	if ((*leak = first_leak(ss, host, name, nlen)) ||
	    (*leak = first_leak(ss, host, value, vlen)) ||
	    (tok && (*leak = basic_leak(ss, host, tok, tl))))
		return -EPERM;
	int nsub = 0;
	int r = tok ? rewrite_basic(ss, host, tok, tl, out, &nsub, rec) : 0;
	if (r == 0 && subst(ss, host, value, vlen, url, out, &nsub) < 0)
		r = -ENOMEM;
	if (r < 0 || out->bad) {
		out->len = out->off + start;
		return -ENOMEM;
	}
	return nsub;
}

int secrets_rewrite_request(const struct secrets *ss, const char *host, const uint8_t *head,
			    const struct http_msg *m, bool strip_encoding, struct buf *out,
			    const struct secret **leak, struct scrub *rec)
{
	/* Leaks first, anywhere in the head (each field checks its Basic credential): nothing
	   goes out. */
	if ((*leak = first_leak(ss, host, head, m->head_len)))
		return -EPERM;
	size_t start = buf_used(out);
	int nsub = 0, r;
	/* Request line: the target is percent-encoded where it is replaced. */
	size_t target_end = m->target_off + m->target_len;
	buf_append(out, head, m->target_off);
	if (subst(ss, host, head + m->target_off, m->target_len, true, out, &nsub) < 0)
		goto nomem;
	buf_append(out, head + target_end, m->line_len + 2 - target_end);
	for (unsigned i = 0; i < m->nfields; i++) {
		const struct http_field *f = &m->field[i];
		if (strip_encoding && http_field_is(head, f, "accept-encoding"))
			continue;
		/* The name, its colon and the space after it, then the value, then the rest. */
		if (subst(ss, host, head + f->name_off, f->value_off - f->name_off, false, out,
			  &nsub) < 0)
			goto nomem;
		r = secrets_rewrite_field(ss, host, head + f->name_off, f->name_len,
					  head + f->value_off, f->value_len, false, out, leak, rec);
		if (r == -EPERM) {
			out->len = out->off + start;
			return -EPERM;
		}
		if (r < 0)
			goto nomem;
		nsub += r;
		buf_append(out, head + f->value_off + f->value_len,
			   f->end + 2 - f->value_off - f->value_len);
	}
	if (strip_encoding)
		buf_append(out, "Accept-Encoding: identity\r\n", 27);
	buf_append(out, "\r\n", 2);
	if (out->bad)
		goto nomem;
	return nsub;
nomem:
	out->len = out->off + start;
	return -ENOMEM;
}

/* ---- request bodies --------------------------------------------------------------------- */

bool secrets_host_bound(const struct secrets *ss, const char *host)
{
	for (unsigned i = 0; ss && i < ss->n; i++)
		if (secret_host_ok(&ss->s[i], host))
			return true;
	return false;
}

enum secrets_body_enc secrets_body_enc_for(const uint8_t *ct, size_t n)
{
	size_t k = 0;
	while (ct && k < n && ct[k] != ';' && ct[k] != ' ' && ct[k] != '\t')
		k++;
	if (k == 33 && !strncasecmp((const char *)ct, "application/x-www-form-urlencoded", k))
		return SECRETS_BODY_FORM;
	if ((k == 16 && !strncasecmp((const char *)ct, "application/json", k)) ||
	    (k > 5 && !strncasecmp((const char *)ct + k - 5, "+json", 5)))
		return SECRETS_BODY_JSON;
	return SECRETS_BODY_RAW;
}

/*
 * The placeholders as patterns. All of them start with SECRET_PREFIX and have one length, so
 * a whole one is found with memmem; only the last SECRET_PLACEHOLDER_LEN - 1 bytes can hold
 * the start of one that needs more bytes.
 */
/*
 * The first SECRET_PREFIX (pl bytes) in p[0..n), or NULL: memchr for its first byte, which
 * scans many bytes per step, then a compare (faster than memmem on bodies of any size).
 */
static const uint8_t *prefix_find(const uint8_t *p, size_t n, size_t pl)
{
	const uint8_t *end = p + n;
	while ((size_t)(end - p) >= pl && (p = memchr(p, SECRET_PREFIX[0], (size_t)(end - p)))) {
		if ((size_t)(end - p) < pl)
			return NULL;
		if (!memcmp(p, SECRET_PREFIX, pl))
			return p;
		p++;
	}
	return NULL;
}

static enum subst_find body_find(void *ctx, const uint8_t *p, size_t n, bool final,
				 struct subst_match *m)
{
	const struct secrets_body *b = ctx;
	const struct secrets *ss = b->ss;
	const size_t L = SECRET_PLACEHOLDER_LEN, pl = sizeof(SECRET_PREFIX) - 1;
	size_t whole_end = n >= L ? n - L + 1 : 0; /* offsets with room for a whole one */
	const uint8_t *q = p;
	while (q < p + whole_end && (q = prefix_find(q, n - (size_t)(q - p), pl)) &&
	       q < p + whole_end) {
		for (unsigned i = 0; i < ss->n; i++) {
			if (!memcmp(q, ss->s[i].placeholder, L)) {
				*m = (struct subst_match){ (size_t)(q - p), L, i };
				return SUBST_FOUND;
			}
		}
		q++;
	}
	if (final)
		return SUBST_NONE;
	for (size_t j = whole_end; j < n; j++) {
		if (p[j] != SECRET_PREFIX[0])
			continue;
		for (unsigned i = 0; i < ss->n; i++) {
			if (!memcmp(p + j, ss->s[i].placeholder, n - j)) {
				m->at = j;
				return SUBST_MAYBE;
			}
		}
	}
	return SUBST_NONE;
}

static int body_put(void *ctx, const uint8_t *matched, const struct subst_match *m, struct buf *out)
{
	struct secrets_body *b = ctx;
	const struct secret *s = &b->ss->s[m->id];
	(void)matched;
	if (!secret_host_ok(s, b->host)) {
		b->leak = s;
		return -EPERM;
	}
	if (b->inspect_only) {
		b->leak = s;
		return -ENOTSUP;
	}
	b->nsub++;
	switch (b->enc) {
	case SECRETS_BODY_FORM:
		return put_url_encoded(out, s->value, s->vlen);
	case SECRETS_BODY_JSON:
		put_json(out, s->value, s->vlen, false);
		return out->bad ? -ENOMEM : 0;
	case SECRETS_BODY_RAW:
		break;
	}
	return buf_append(out, s->value, s->vlen);
}

void secrets_body_init(struct secrets_body *b, const struct secrets *ss, const char *host,
		       enum secrets_body_enc enc, bool inspect_only)
{
	*b = (struct secrets_body){
		.ss = ss, .host = host, .enc = enc, .inspect_only = inspect_only
	};
}

int secrets_body_feed(struct secrets_body *b, const uint8_t *p, size_t n, bool final,
		      struct buf *out)
{
	if (!b->ss || !b->ss->n)
		return n ? buf_append(out, p, n) : 0;
	struct subst_rules r = { body_find, body_put, b };
	return subst_feed(&b->st, &r, p, n, final, out);
}

void secrets_body_fini(struct secrets_body *b)
{
	subst_fini(&b->st);
}

/* ---- responses -------------------------------------------------------------------------- */

int scrub_record(struct scrub *sc, unsigned secret, const uint8_t *p, size_t n, const uint8_t *rep,
		 size_t repn)
{
	if (!n || n > SCRUB_FORM_MAX)
		return -ENOSPC;
	for (unsigned i = 0; i < sc->nrec; i++)
		if (sc->rec[i].n == n && !memcmp(sc->rec[i].p, p, n))
			return 0;
	if (sc->nrec >= SCRUB_MAX_RECORDED)
		return -ENOSPC;
	struct scrub_form f = { .n = n, .repn = repn, .secret = secret };
	f.p = malloc(n);
	f.rep = malloc(repn ? repn : 1);
	if (!f.p || !f.rep) {
		free(f.p);
		free(f.rep);
		return -ENOMEM;
	}
	memcpy(f.p, p, n);
	memcpy(f.rep, rep, repn);
	sc->rec[sc->nrec++] = f;
	return 0;
}

/* Check form f at p[0..n): 1 whole match, 2 could match with more bytes, 0 no. */
static int form_at(const struct scrub_form *f, const uint8_t *p, size_t n, bool final)
{
	if (n >= f->n)
		return !memcmp(p, f->p, f->n);
	return !final && !memcmp(p, f->p, n) ? 2 : 0;
}

/* The scrubber's rule set: the forms of every secret, and the connection's recorded ones. */
struct scrub_rules {
	const struct secrets *ss;
	const struct scrub *sc; /* may be NULL */
	const struct scrub_form *best; /* what find found, for put */
};

/* The bytes that may start a form: a table, and the list of them when there are few. */
struct scrub_starts {
	uint8_t any[256];
	uint8_t set[4];
	unsigned nset; /* > 4: use the table */
};

static void scrub_starts_of(const struct secrets *ss, const struct scrub *sc,
			    struct scrub_starts *st)
{
	st->nset = 0;
	for (unsigned b = 0; b < 256; b++)
		st->any[b] = ss->first[b] != 0;
	for (unsigned k = 0; sc && k < sc->nrec; k++)
		if (sc->rec[k].n)
			st->any[sc->rec[k].p[0]] = 1;
	for (unsigned b = 0; b < 256 && st->nset <= 4; b++)
		if (st->any[b]) {
			if (st->nset < 4)
				st->set[st->nset] = (uint8_t)b;
			st->nset++;
		}
}

/*
 * The first offset in p[0..n) whose byte may start a form (n if none): the hot loop of every
 * response body. Few distinct first bytes (the usual case) are looked for with memchr, which
 * scans many bytes per step; more, through the table.
 */
static size_t scrub_skip(const struct scrub_starts *st, const uint8_t *p, size_t n)
{
	if (st->nset <= 4) {
		size_t at = n;
		for (unsigned j = 0; j < st->nset; j++) {
			const uint8_t *q = memchr(p, st->set[j], at);
			if (q)
				at = (size_t)(q - p);
		}
		return at;
	}
	size_t i = 0;
	while (i < n && !st->any[p[i]])
		i++;
	return i;
}

static enum subst_find scrub_find(void *ctx, const uint8_t *p, size_t n, bool final,
				  struct subst_match *m)
{
	struct scrub_rules *c = ctx;
	const struct secrets *ss = c->ss;
	const struct scrub *sc = c->sc;
	struct scrub_starts st;
	scrub_starts_of(ss, sc, &st);
	for (size_t i = scrub_skip(&st, p, n); i < n;
	     i += 1 + scrub_skip(&st, p + i + 1, n - i - 1)) {
		const struct scrub_form *best = NULL;
		bool partial = false;
		for (int k = ss->first[p[i]]; k;) {
			const struct scrub_form *f =
			    &ss->s[(k - 1) / SECRET_MAX_FORMS].forms[(k - 1) % SECRET_MAX_FORMS];
			int r = form_at(f, p + i, n - i, final);
			if (r == 1 && (!best || f->n > best->n))
				best = f;
			partial |= r == 2;
			k = f->next;
		}
		for (unsigned k = 0; sc && k < sc->nrec; k++) {
			const struct scrub_form *f = &sc->rec[k];
			int r = form_at(f, p + i, n - i, final);
			if (r == 1 && (!best || f->n > best->n))
				best = f;
			partial |= r == 2;
		}
		m->at = i;
		if (partial)
			return SUBST_MAYBE; /* a longer form may still match: decide with more bytes
					     */
		if (best) {
			c->best = best;
			m->len = best->n;
			m->id = best->secret;
			return SUBST_FOUND;
		}
	}
	return SUBST_NONE;
}

static int scrub_put(void *ctx, const uint8_t *matched, const struct subst_match *m,
		     struct buf *out)
{
	const struct scrub_rules *c = ctx;
	const struct scrub_form *f = c->best;
	(void)matched;
	if (f->rep)
		return buf_append(out, f->rep, f->repn);
	return buf_append(out, c->ss->s[m->id].placeholder, SECRET_PLACEHOLDER_LEN);
}

int scrub_feed(const struct secrets *ss, struct scrub *sc, const uint8_t *p, size_t n, bool final,
	       struct buf *out)
{
	if (!ss || !ss->n)
		return n ? buf_append(out, p, n) : 0;
	struct scrub_rules c = { ss, sc, NULL };
	struct subst_rules r = { scrub_find, scrub_put, &c };
	return subst_feed(&sc->st, &r, p, n, final, out);
}

int scrub_all(const struct secrets *ss, const struct scrub *sc, const uint8_t *p, size_t n,
	      struct buf *out)
{
	if (!ss || !ss->n)
		return buf_append(out, p, n);
	struct scrub_rules c = { ss, sc, NULL };
	struct subst_rules r = { scrub_find, scrub_put, &c };
	struct subst st = { 0 };
	int err = subst_feed(&st, &r, p, n, true, out);
	subst_fini(&st);
	return err;
}

void scrub_fini(struct scrub *sc)
{
	subst_fini(&sc->st);
	for (unsigned i = 0; i < sc->nrec; i++) {
		secret_wipe_free(sc->rec[i].p, sc->rec[i].n);
		secret_wipe_free(sc->rec[i].rep, sc->rec[i].repn ? sc->rec[i].repn : 1);
	}
	sc->nrec = 0;
}
