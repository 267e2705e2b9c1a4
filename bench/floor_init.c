/*
 * The floors of bench/boot and bench/net: an /init that resets the VM at once (reboot=t +
 * -no-reboot end QEMU). With PORT_FLOOR=up:N or PORT_FLOOR=down:N on the kernel command line
 * (the kernel hands unknown name=value words to init as environment) it first moves N bytes
 * through the virtio-serial port named matchlock.link as a plain program does, with nothing of
 * ours on the way: the speed the link could have on this QEMU and kernel.
 *   up:   write N bytes, then wait for one byte from the host (so nothing queued is lost).
 *   down: read N bytes, then write one byte back (the host stops its clock there).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

#define PORT_NAME "matchlock.link"

static int find_port(void)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char path[300], name[64] = "";
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, name, sizeof(name) - 1);
		close(fd);
		if (n > 0 && !strncmp(name, PORT_NAME, strlen(PORT_NAME))) {
			snprintf(path, sizeof(path), "/dev/%s", e->d_name);
			closedir(d);
			return open(path, O_RDWR);
		}
	}
	if (d)
		closedir(d);
	return -1;
}

/* The port shows up with its name a moment after the driver: look for up to 5 s. */
static int open_port(void)
{
	mkdir("/dev", 0755);
	mkdir("/sys", 0755);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	int fd = -1;
	for (int tries = 0; fd < 0 && tries < 5000; tries++) {
		fd = find_port();
		if (fd < 0)
			usleep(1000);
	}
	return fd;
}

static void port_floor(const char *spec)
{
	static char buf[1 << 20];
	int up = !strncmp(spec, "up:", 3);
	long long left = strtoll(spec + (up ? 3 : 5), NULL, 10);
	int fd = open_port();
	if (fd < 0)
		return;
	/* A read before the host's side of the port shows as connected returns 0: wait 1 s. */
	int idle = 0;
	while (left > 0) {
		size_t k = left < (long long)sizeof(buf) ? (size_t)left : sizeof(buf);
		ssize_t n = up ? write(fd, buf, k) : read(fd, buf, k);
		if (n == 0 && !up && idle++ < 1000) {
			usleep(1000);
			continue;
		}
		if (n <= 0)
			return;
		left -= n;
	}
	if (up)
		(void)!read(fd, buf, 1);
	else
		(void)!write(fd, "!", 1);
}

int main(void)
{
	const char *spec = getenv("PORT_FLOOR");
	if (spec && (!strncmp(spec, "up:", 3) || !strncmp(spec, "down:", 5)))
		port_floor(spec);
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}
