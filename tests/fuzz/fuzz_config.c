/* fuzz_config.c - libFuzzer target for the INI loader (config.c, via Debian's inih).
 *
 * Each input is written to a memfd and loaded through its /proc/self/fd path, exactly
 * as the daemon loads --config: config_load must return 0 with a config or -EINVAL
 * with error lines, never crash, leak or read out of bounds. A config that loads is
 * printed (secrets masked) to /dev/null, and must print its masked secrets as masked.
 *
 * The loader reads the environment (POD_NAME, HOSTNAME, password_env) and, for
 * password_file, any path the input names: the fuzzer sets a few variables up front
 * so those branches are reachable, and its -timeout catches a path that blocks. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int input_fd = -1;
static char input_path[64];
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	input_fd = memfd_create("fuzz_config.ini", MFD_CLOEXEC);
	if (input_fd < 0) {
		perror("memfd_create");
		abort();
	}
	snprintf(input_path, sizeof(input_path), "/proc/self/fd/%d", input_fd);
	devnull = fopen("/dev/null", "w");
	if (devnull == NULL) {
		perror("/dev/null");
		abort();
	}
	/* Values for password_env = FUZZ_PASSWORD / FUZZ_EMPTY to find. */
	setenv("FUZZ_PASSWORD", "fuzz-secret", 1);
	setenv("FUZZ_EMPTY", "", 1);
	setenv("POD_NAME", "fuzz-pod", 1);
	return 0;
}

static void write_input(const uint8_t *data, size_t size)
{
	size_t off = 0;

	if (ftruncate(input_fd, 0) != 0 || lseek(input_fd, 0, SEEK_SET) != 0) {
		perror("memfd reset");
		abort();
	}
	while (off < size) {
		ssize_t n = write(input_fd, data + off, size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			perror("memfd write");
			abort();
		}
		off += (size_t)n;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	struct buf errors;
	int rc;

	write_input(data, size);
	buf_init(&errors);
	rc = config_load(input_path, &cfg, &errors);
	if (rc == 0) {
		if (cfg == NULL || errors.len != 0)
			abort(); /* success must come with a config and no errors */
		config_print(cfg, devnull);
		fflush(devnull);
		config_free(cfg);
	} else if (rc == -EINVAL) {
		if (errors.len == 0 && !errors.failed)
			abort(); /* a refusal must say why */
	} else if (rc != -ENOMEM) {
		abort();
	}
	buf_release(&errors);
	return 0;
}
