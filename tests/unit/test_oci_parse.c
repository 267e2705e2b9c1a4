/* SPDX-License-Identifier: MIT */
/* Unit tests for the OCI parsers: references, manifests/indexes, configs, challenges, tar paths. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "oci/auth.h"
#include "oci/manifest.h"
#include "oci/ref.h"
#include "oci/unpack.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static void test_refs(void)
{
	struct oci_ref r;
	char err[256], name[600];
	CHECK_EQ_INT(oci_ref_parse("alpine", &r, err, sizeof(err)), 0);
	oci_ref_name(&r, name, sizeof(name));
	CHECK(!strcmp(name, "docker.io/library/alpine:latest"));
	CHECK(!strcmp(oci_ref_api_host(&r), "registry-1.docker.io"));
	CHECK_EQ_INT(oci_ref_parse("localhost:5000/a/b:v1.2", &r, err, sizeof(err)), 0);
	CHECK(!strcmp(r.registry, "localhost:5000") && !strcmp(r.repo, "a/b") &&
	      !strcmp(r.tag, "v1.2"));
	CHECK_EQ_INT(oci_ref_parse("ghcr.io/o/r@" D1, &r, err, sizeof(err)), 0);
	CHECK(!strcmp(r.digest, D1) && !r.tag[0]);
	CHECK_EQ_INT(oci_ref_parse("user/app", &r, err, sizeof(err)), 0);
	CHECK(!strcmp(r.repo, "user/app") && !strcmp(r.registry, "docker.io"));
	CHECK_EQ_INT(oci_ref_parse("UPPER", &r, err, sizeof(err)), -EINVAL);
	CHECK_EQ_INT(oci_ref_parse("a/../b", &r, err, sizeof(err)), -EINVAL);
	CHECK_EQ_INT(oci_ref_parse("a:bad tag", &r, err, sizeof(err)), -EINVAL);
	CHECK_EQ_INT(oci_ref_parse("a@sha256:12", &r, err, sizeof(err)), -EINVAL);
	CHECK_EQ_INT(oci_ref_parse("", &r, err, sizeof(err)), -EINVAL);
	CHECK(oci_registry_insecure("127.0.0.1:5000", NULL));
	CHECK(oci_registry_insecure("localhost", NULL));
	CHECK(!oci_registry_insecure("example.com", NULL));
	CHECK(oci_registry_insecure("reg.lan:80", "x.y,reg.lan:80"));
	CHECK(!oci_registry_insecure("reg.lan", "reg.lan:80"));
}

static void test_manifests(void)
{
	struct oci_manifest m;
	char err[256];
	const char *man =
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	    "\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":10},"
	    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\","
	    "\"digest\":\"" D2 "\",\"size\":20}]}";
	if (CHECK_EQ_INT(oci_manifest_parse(man, strlen(man), NULL, &m, err, sizeof(err)), 0)) {
		CHECK_EQ_INT(m.kind, OCI_KIND_MANIFEST);
		CHECK_EQ_INT(m.n, 1);
		CHECK_EQ_INT(m.entries[0].size, 20);
		CHECK_EQ_INT(oci_layer_compression(m.entries[0].media_type), OCI_COMP_ZSTD);
		oci_manifest_fini(&m);
	}
	const char *idx =
	    "{\"schemaVersion\":2,\"manifests\":["
	    "{\"digest\":\"" D1
	    "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}},"
	    "{\"digest\":\"" D2
	    "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";
	if (CHECK_EQ_INT(oci_manifest_parse(idx, strlen(idx),
					    "application/vnd.oci.image.index.v1+json", &m, err,
					    sizeof(err)),
			 0)) {
		CHECK_EQ_INT(m.kind, OCI_KIND_INDEX);
		CHECK_EQ_INT(oci_index_choose(&m, "linux", "amd64", err, sizeof(err)), 1);
		CHECK_EQ_INT(oci_index_choose(&m, "linux", "s390x", err, sizeof(err)), -ENOENT);
		CHECK(strstr(err, "linux/arm64") != NULL);
		oci_manifest_fini(&m);
	}
	/* Hostile shapes: wrong types, bad digests, negative sizes, no layers, duplicate keys. */
	static const char *const bad[] = {
		"[]",
		"{\"schemaVersion\":1}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1},\"layers\":[]}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"md5:00\",\"size\":1},\"layers\":[{"
		"\"digest\":\"" D1 "\",\"size\":1}]}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1
		"\",\"size\":-1},\"layers\":[{\"digest\":\"" D1 "\",\"size\":1}]}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1},\"layers\":{}}",
		"{\"schemaVersion\":2,\"schemaVersion\":2}",
		"{\"schemaVersion\":2,\"mediaType\":\"text/html\"}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1
		"\",\"size\":1},\"layers\":[{\"digest\":\"" D1 "\",\"size\":1,\"platform\":7}]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(oci_manifest_parse(bad[i], strlen(bad[i]), NULL, &m, err, sizeof(err)) < 0);
	CHECK_EQ_INT(
	    oci_layer_compression("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
	    -ENOTSUP);
}

static void test_config(void)
{
	struct oci_image_config c;
	char err[256];
	const char *cfg =
	    "{\"created\":\"2024-01-02T03:04:05.5Z\",\"config\":{\"Entrypoint\":[\"/bin/"
	    "sh\",\"-c\"],"
	    "\"Cmd\":[\"echo hi\"],\"Env\":[\"A=1\"],\"User\":\"1000\",\"WorkingDir\":\"/w\"}}";
	if (!CHECK_EQ_INT(oci_config_parse(cfg, strlen(cfg), &c, err, sizeof(err)), 0))
		return;
	CHECK_EQ_INT(c.created, 1704164645);
	CHECK(!strcmp(c.user, "1000") && !strcmp(c.workdir, "/w") && !strcmp(c.env[0], "A=1"));
	char *args[] = { "x", "y", NULL }, *none[] = { NULL };
	char **v = oci_config_argv(&c, NULL, none);
	CHECK(v && !strcmp(v[0], "/bin/sh") && !strcmp(v[2], "echo hi") && !v[3]);
	free(v);
	v = oci_config_argv(&c, NULL, args);
	CHECK(v && !strcmp(v[1], "-c") && !strcmp(v[2], "x") && !strcmp(v[3], "y") && !v[4]);
	free(v);
	v = oci_config_argv(&c, "/bin/echo", none);
	CHECK(v && !strcmp(v[0], "/bin/echo") && !v[1]);
	free(v);
	v = oci_config_argv(&c, "", args);
	CHECK(v && !strcmp(v[0], "x") && !v[2]);
	free(v);
	oci_config_fini(&c);
	static const char *const bad[] = {
		"{\"config\":{\"Cmd\":\"not-a-list\"}}",
		"{\"config\":{\"Env\":[\"NOEQUALS\"]}}",
		"{\"config\":{\"Env\":[1]}}",
		"{\"config\":{\"WorkingDir\":\"relative\"}}",
		"{\"config\":{\"Cmd\":[\"a\\u0000b\"]}}",
		"{\"config\":[]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(oci_config_parse(bad[i], strlen(bad[i]), &c, err, sizeof(err)) < 0);
}

static void test_challenge(void)
{
	struct oci_challenge c;
	const char *h =
	    "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
	    "scope=\"repository:library/alpine:pull\"";
	if (CHECK_EQ_INT(oci_challenge_parse(h, strlen(h), &c), 0)) {
		CHECK_EQ_INT(c.scheme, OCI_AUTH_BEARER);
		CHECK(!strcmp(c.realm, "https://auth.docker.io/token"));
		CHECK(!strcmp(c.service, "registry.docker.io"));
		CHECK(!strcmp(c.scope, "repository:library/alpine:pull"));
	}
	h = "Basic realm=\"reg\"";
	CHECK(oci_challenge_parse(h, strlen(h), &c) == 0 && c.scheme == OCI_AUTH_BASIC);
	static const char *const bad[] = { "Negotiate", "Bearer realm=\"unterminated",
					   "Bearer realm=\"file:///etc/passwd\"", "Bearer =x", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(oci_challenge_parse(bad[i], strlen(bad[i]), &c) < 0);
}

static void test_tar_paths(void)
{
	char out[OCI_MAX_PATH + 1];
	CHECK(oci_tar_path_clean("./usr//bin/./sh", out, sizeof(out)) == 0 &&
	      !strcmp(out, "usr/bin/sh"));
	CHECK(oci_tar_path_clean("etc/", out, sizeof(out)) == 0 && !strcmp(out, "etc"));
	CHECK_EQ_INT(oci_tar_path_clean("./", out, sizeof(out)), 1);
	CHECK_EQ_INT(oci_tar_path_clean("../x", out, sizeof(out)), -EINVAL);
	CHECK_EQ_INT(oci_tar_path_clean("a/../../x", out, sizeof(out)), -EINVAL);
	CHECK_EQ_INT(oci_tar_path_clean("/etc/passwd", out, sizeof(out)), -EINVAL);
	CHECK(oci_tar_path_clean("a/..b/c..", out, sizeof(out)) == 0 && !strcmp(out, "a/..b/c.."));
	char long_comp[300];
	memset(long_comp, 'a', sizeof(long_comp) - 1);
	long_comp[sizeof(long_comp) - 1] = 0;
	CHECK_EQ_INT(oci_tar_path_clean(long_comp, out, sizeof(out)), -EINVAL);
	CHECK_EQ_INT(oci_tar_path_clean("a/b", out, 3), -EINVAL);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_refs);
	CHECK_RUN(test_manifests);
	CHECK_RUN(test_config);
	CHECK_RUN(test_challenge);
	CHECK_RUN(test_tar_paths);
	return check_summary();
}
