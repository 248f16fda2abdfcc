/*
 * dockerify-init: PID 1 of an initramfs exported by `dockerify export --format initramfs`.
 *
 * It turns a container image's root filesystem into a bootable system for one command:
 *   1. mounts proc, sysfs, devtmpfs (/dev), devpts, /dev/shm, /run and /tmp;
 *   2. makes sure the console is on fds 0, 1 and 2, brings up the loopback interface (and a
 *      static address on a named interface when asked);
 *   3. reads its configuration from /dockerify-init.conf, written by the exporter from the image
 *      config: the command (Entrypoint + Cmd), Env, WorkingDir and the user (numeric uid/gid and
 *      supplementary groups, resolved at export time so no NSS is needed here);
 *   4. runs the command in its own session with the console as controlling terminal, forwards
 *      SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to it, and reaps every zombie as PID 1 must;
 *   5. when the command exits, prints "dockerify-init: exit status N" on the console (128+SIG
 *      for a signal, as shells and Docker report it), stops the remaining processes, syncs and
 *      powers off (reboot(2); with `qemu -no-reboot` QEMU then exits).
 *
 * The configuration is a sequence of NUL-terminated strings, read in pairs KEY VALUE after the
 * header "dockerify-init" "1":
 *   arg V       one argv element (in order; at least one)
 *   env K=V     one environment variable (in order)
 *   cwd PATH    working directory (created when missing, as Docker does)
 *   uid N       numeric user id;  gid N  numeric group id;  groups N,N,...  supplementary groups
 *   hostname H  the host name
 *   net IF ADDR/PREFIX [GATEWAY]   a static IPv4 address for IF (e.g. eth0 10.0.2.15/24 10.0.2.2)
 *
 * It needs nothing from the image: it is built static (scripts/build-init.sh), so it works in
 * FROM-scratch images without a shell or a libc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CONF_PATH "/dockerify-init.conf"
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_ITEMS 4096
#define MAX_GROUPS 256

static const char *argv_items[MAX_ITEMS + 1];
static int argc_items;
static const char *env_items[MAX_ITEMS + 2];
static int envc_items;
static const char *cwd = "/";
static uid_t run_uid;
static gid_t run_gid;
static gid_t groups[MAX_GROUPS];
static int ngroups;
static const char *hostname;
static const char *net_if, *net_addr, *net_gw;

static volatile sig_atomic_t child_pid;

static void say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof buf - 2)
		n = sizeof buf - 2;
	buf[n++] = '\n';
	if (write(2, buf, n) < 0) {
		/* Nothing better to do: the console is gone. */
	}
}

static void mkdirs(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof tmp)
		return;
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			mkdir(tmp, 0755);
			*p = '/';
		}
	}
	mkdir(tmp, mode);
}

static void mount_one(const char *source, const char *target, const char *type, unsigned long flags,
		      const char *data, mode_t mode)
{
	mkdirs(target, mode);
	if (mount(source, target, type, flags, data) != 0 && errno != EBUSY)
		say("dockerify-init: warning: cannot mount %s on %s: %s", type, target, strerror(errno));
}

static void setup_mounts(void)
{
	const unsigned long common = MS_NOSUID | MS_NODEV;

	mount_one("proc", "/proc", "proc", common | MS_NOEXEC, NULL, 0555);
	mount_one("sysfs", "/sys", "sysfs", common | MS_NOEXEC, NULL, 0555);
	mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", 0755);
	mount_one("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666", 0755);
	mount_one("shm", "/dev/shm", "tmpfs", common, "mode=1777", 01777);
	mount_one("tmpfs", "/run", "tmpfs", common, "mode=0755", 0755);
	mount_one("tmpfs", "/tmp", "tmpfs", common, "mode=1777", 01777);
	if (access("/dev/ptmx", F_OK) != 0)
		symlink("pts/ptmx", "/dev/ptmx");
	if (access("/dev/fd", F_OK) != 0)
		symlink("/proc/self/fd", "/dev/fd");
}

static void setup_console(void)
{
	int fd;

	for (int i = 0; i < 3; i++) {
		if (fcntl(i, F_GETFD) != -1)
			continue;
		fd = open("/dev/console", O_RDWR | O_NOCTTY);
		if (fd < 0)
			fd = open("/dev/null", O_RDWR);
		if (fd >= 0 && fd != i) {
			dup2(fd, i);
			close(fd);
		}
	}
}

static int read_config(void)
{
	static char *buf;
	struct stat st;
	ssize_t got = 0;
	int fd = open(CONF_PATH, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		say("dockerify-init: cannot open %s: %s", CONF_PATH, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size > (16 << 20)) {
		say("dockerify-init: %s is empty or too large", CONF_PATH);
		close(fd);
		return -1;
	}
	buf = malloc(st.st_size + 1);
	if (!buf)
		return -1;
	while (got < st.st_size) {
		ssize_t n = read(fd, buf + got, st.st_size - got);
		if (n <= 0)
			break;
		got += n;
	}
	close(fd);
	buf[got] = 0;

	const char *items[2 * MAX_ITEMS + 16];
	int n = 0;
	for (char *p = buf; p < buf + got && n < (int)(sizeof items / sizeof *items);) {
		items[n++] = p;
		p += strlen(p) + 1;
	}
	if (n < 2 || strcmp(items[0], "dockerify-init") != 0 || strcmp(items[1], "1") != 0) {
		say("dockerify-init: %s is not a version 1 configuration", CONF_PATH);
		return -1;
	}
	for (int i = 2; i + 1 < n; i += 2) {
		const char *k = items[i], *v = items[i + 1];
		if (!strcmp(k, "arg") && argc_items < MAX_ITEMS)
			argv_items[argc_items++] = v;
		else if (!strcmp(k, "env") && envc_items < MAX_ITEMS)
			env_items[envc_items++] = v;
		else if (!strcmp(k, "cwd"))
			cwd = v;
		else if (!strcmp(k, "uid"))
			run_uid = (uid_t)strtoul(v, NULL, 10);
		else if (!strcmp(k, "gid"))
			run_gid = (gid_t)strtoul(v, NULL, 10);
		else if (!strcmp(k, "groups")) {
			for (const char *p = v; *p && ngroups < MAX_GROUPS;) {
				char *end;
				groups[ngroups++] = (gid_t)strtoul(p, &end, 10);
				p = *end == ',' ? end + 1 : end + strlen(end);
			}
		} else if (!strcmp(k, "hostname"))
			hostname = v;
		else if (!strcmp(k, "net")) {
			static char copy[256];
			char *save = NULL;
			snprintf(copy, sizeof copy, "%s", v);
			net_if = strtok_r(copy, " ", &save);
			net_addr = strtok_r(NULL, " ", &save);
			net_gw = strtok_r(NULL, " ", &save);
		}
	}
	if (argc_items == 0) {
		say("dockerify-init: %s names no command", CONF_PATH);
		return -1;
	}
	argv_items[argc_items] = NULL;
	env_items[envc_items] = NULL;
	return 0;
}

static int set_flags_up(int sock, const char *ifname)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) != 0)
		return -1;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(sock, SIOCSIFFLAGS, &ifr);
}

static void setup_network(void)
{
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (sock < 0)
		return;
	set_flags_up(sock, "lo");
	if (net_if && net_addr) {
		struct ifreq ifr;
		struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
		char addr[64];
		char *slash;
		int prefix = 24;

		snprintf(addr, sizeof addr, "%s", net_addr);
		slash = strchr(addr, '/');
		if (slash) {
			*slash = 0;
			prefix = atoi(slash + 1);
		}
		memset(&ifr, 0, sizeof ifr);
		snprintf(ifr.ifr_name, IFNAMSIZ, "%s", net_if);
		sin->sin_family = AF_INET;
		if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1 || ioctl(sock, SIOCSIFADDR, &ifr) != 0) {
			say("dockerify-init: warning: cannot set address %s on %s: %s", net_addr, net_if,
			    strerror(errno));
			close(sock);
			return;
		}
		sin->sin_addr.s_addr = prefix <= 0 ? 0 : htonl(0xffffffffu << (32 - prefix));
		ioctl(sock, SIOCSIFNETMASK, &ifr);
		if (set_flags_up(sock, net_if) != 0)
			say("dockerify-init: warning: cannot bring up %s: %s", net_if, strerror(errno));
		if (net_gw) {
			struct rtentry rt;
			memset(&rt, 0, sizeof rt);
			((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
			((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
			((struct sockaddr_in *)&rt.rt_gateway)->sin_family = AF_INET;
			inet_pton(AF_INET, net_gw, &((struct sockaddr_in *)&rt.rt_gateway)->sin_addr);
			rt.rt_flags = RTF_UP | RTF_GATEWAY;
			if (ioctl(sock, SIOCADDRT, &rt) != 0)
				say("dockerify-init: warning: cannot add the default route via %s: %s", net_gw,
				    strerror(errno));
		}
	}
	close(sock);
}

static const char *env_lookup(const char *name)
{
	size_t len = strlen(name);

	for (int i = 0; i < envc_items; i++)
		if (!strncmp(env_items[i], name, len) && env_items[i][len] == '=')
			return env_items[i] + len + 1;
	return NULL;
}

/* execvpe(3) with the command's own PATH, not ours. Returns the errno that counts. */
static int exec_command(void)
{
	const char *file = argv_items[0];
	const char *path;
	char full[PATH_MAX];
	int saved = ENOENT;

	if (strchr(file, '/')) {
		execve(file, (char *const *)argv_items, (char *const *)env_items);
		return errno;
	}
	path = env_lookup("PATH");
	if (!path)
		path = DEFAULT_PATH;
	while (*path) {
		const char *end = strchr(path, ':');
		size_t dirlen = end ? (size_t)(end - path) : strlen(path);
		if (dirlen + strlen(file) + 2 <= sizeof full) {
			if (dirlen == 0)
				snprintf(full, sizeof full, "%s", file);
			else
				snprintf(full, sizeof full, "%.*s/%s", (int)dirlen, path, file);
			execve(full, (char *const *)argv_items, (char *const *)env_items);
			if (errno == EACCES)
				saved = EACCES;
			else if (errno != ENOENT && errno != ENOTDIR)
				return errno;
		}
		if (!end)
			break;
		path = end + 1;
	}
	return saved;
}

static void child(void)
{
	sigset_t none;
	int err;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	setsid();
	ioctl(0, TIOCSCTTY, 0);
	if (chdir(cwd) != 0) {
		mkdirs(cwd, 0755);
		if (chdir(cwd) != 0) {
			say("dockerify-init: cannot change to the working directory %s: %s", cwd, strerror(errno));
			_exit(126);
		}
	}
	if (setgroups(ngroups, groups) != 0 || setgid(run_gid) != 0 || setuid(run_uid) != 0) {
		say("dockerify-init: cannot switch to user %u:%u: %s", (unsigned)run_uid, (unsigned)run_gid,
		    strerror(errno));
		_exit(126);
	}
	err = exec_command();
	say("dockerify-init: cannot run %s: %s", argv_items[0], strerror(err));
	_exit(err == ENOENT ? 127 : 126);
}

static void forward(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

static void reap_all(int seconds)
{
	struct timespec pause = {0, 50 * 1000 * 1000};

	for (int i = 0; i < seconds * 20; i++) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)
			return;
		nanosleep(&pause, NULL);
	}
}

static void power_off(void)
{
	sync();
	reboot(RB_POWER_OFF);
	/* No ACPI or PSCI power-off here: a reboot makes `qemu -no-reboot` exit as well. */
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

int main(void)
{
	int status = 0, code;
	pid_t pid;
	struct sigaction sa;

	if (getpid() != 1)
		say("dockerify-init: warning: not running as PID 1");
	setup_mounts();
	setup_console();
	umask(022);
	if (read_config() != 0) {
		say("dockerify-init: exit status 127");
		power_off();
	}
	if (hostname)
		sethostname(hostname, strlen(hostname));
	setup_network();

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = forward;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
	for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
		sigaction(forwarded[i], &sa, NULL);

	pid = fork();
	if (pid < 0) {
		say("dockerify-init: fork: %s", strerror(errno));
		power_off();
	}
	if (pid == 0)
		child();
	child_pid = pid;

	/* PID 1 inherits every orphan: reap them all until the main process is among the dead. */
	for (;;) {
		pid_t dead = waitpid(-1, &status, 0);
		if (dead == pid)
			break;
		if (dead < 0 && errno != EINTR) {
			status = 127 << 8;
			break;
		}
	}
	child_pid = 0;
	if (WIFEXITED(status))
		code = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		code = 128 + WTERMSIG(status);
	else
		code = 127;
	if (WIFSIGNALED(status))
		say("dockerify-init: exit status %d (killed by signal %d)", code, WTERMSIG(status));
	else
		say("dockerify-init: exit status %d", code);

	/* Like `docker stop` for what is left: TERM, a grace period, then KILL. */
	kill(-1, SIGTERM);
	reap_all(2);
	kill(-1, SIGKILL);
	reap_all(1);
	power_off();
	return code;
}
