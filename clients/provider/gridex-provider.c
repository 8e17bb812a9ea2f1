/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridex-provider: the reference provisioning agent a GPU seller runs as the
 * exchange's hook (docs/provisioning.md).
 *
 *   gridex-provider [--config=FILE] start|stop|status|reconcile  < request.json
 *   gridex-provider [--config=FILE] inventory
 *
 * start pins the lease's workload to the leased devices: the vendor's
 * visibility variable set to their UUIDs and, with "pinning": "systemd", a
 * transient unit with DevicePolicy=closed and DeviceAllow= for the leased
 * device nodes only (RuntimeMaxSec= ends it at the window's end). Without
 * systemd ("pinning": "cgroup"), a supervisor process of its own session
 * runs the workload in a device cgroup allowing the leased nodes only
 * (devcg.c: cgroup v1 devices.allow, or a cgroup v2 device program) and ends
 * it at the window's end (SIGTERM, the grace period, SIGKILL) even if the
 * exchange is unreachable; "pinning": "process" is the same without the
 * cgroup. After the start the
 * agent checks with nvidia-smi that the workload's GPU processes use leased
 * devices only. Its state is a JSON file written atomically.
 *
 * Inventory: a fixture file ("inventory_file"), else NVML loaded at run
 * time (dlopen("libnvidia-ml.so.1")), else `nvidia-smi --query-gpu=...`.
 */
#define _GNU_SOURCE /* setsid, dlopen flags, strdup */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "devcg.h"

#define CONFIG_DEFAULT "/etc/gridex/provider.json"
#define DEVICES_MAX    64

struct device {
	char uuid[96], name[96], node[128];
	bool healthy;
};

static struct {
	char state_dir[512], inventory_file[512], nvidia_smi[512], systemd_run[512], systemctl[512],
		cgroup_dir[512];
	char vendor[32], pinning[16];
	int64_t start_wait_ms;
} cfg;

static struct device inv[DEVICES_MAX];
static size_t n_inv;
static bool quiet; /* reconcile's starts: results to the log, not stdout */

/* ---------- results ---------- */

static json_t *ok_result(const char *lease, const char *state)
{
	return json_pack("{s:i, s:b, s:s, s:s}", "version", 1, "ok", 1, "lease_id", lease, "state",
			 state);
}

static int finish(json_t *result)
{
	bool ok = json_is_true(json_object_get(result, "ok"));
	if (!quiet) {
		json_dumpf(result, stdout, JSON_COMPACT);
		fputc('\n', stdout);
	}
	json_decref(result);
	return ok ? 0 : 1;
}

static int fail(const char *code, bool retryable, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(const char *code, bool retryable, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "gridex-provider: %s: %s\n", code, msg);
	return finish(json_pack("{s:i, s:b, s:{s:s, s:s, s:b}}", "version", 1, "ok", 0, "error",
				"code", code, "message", msg, "retryable", retryable));
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

/* ---------- configuration ---------- */

static bool load_config(const char *path, char *err, size_t errlen)
{
	copy(cfg.state_dir, sizeof(cfg.state_dir), "/var/lib/gridex-provider");
	copy(cfg.nvidia_smi, sizeof(cfg.nvidia_smi), "nvidia-smi");
	copy(cfg.systemd_run, sizeof(cfg.systemd_run), "systemd-run");
	copy(cfg.systemctl, sizeof(cfg.systemctl), "systemctl");
	copy(cfg.vendor, sizeof(cfg.vendor), "nvidia");
	copy(cfg.pinning, sizeof(cfg.pinning), "systemd");
	cfg.start_wait_ms = 1000;
	json_error_t je;
	json_t *c = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (c == NULL) {
		snprintf(err, errlen, "%s: %s", path, je.text);
		return false;
	}
	const char *key;
	json_t *v;
	bool good = json_is_object(c);
	json_object_foreach(c, key, v)
	{
		char *dst = strcmp(key, "state_dir") == 0	 ? cfg.state_dir
			    : strcmp(key, "inventory_file") == 0 ? cfg.inventory_file
			    : strcmp(key, "nvidia_smi") == 0	 ? cfg.nvidia_smi
			    : strcmp(key, "systemd_run") == 0	 ? cfg.systemd_run
			    : strcmp(key, "systemctl") == 0	 ? cfg.systemctl
			    : strcmp(key, "vendor") == 0	 ? cfg.vendor
			    : strcmp(key, "pinning") == 0	 ? cfg.pinning
			    : strcmp(key, "cgroup_dir") == 0	 ? cfg.cgroup_dir
								 : NULL;
		size_t cap = dst == cfg.vendor	  ? sizeof(cfg.vendor)
			     : dst == cfg.pinning ? sizeof(cfg.pinning)
						  : sizeof(cfg.state_dir);
		if (strcmp(key, "start_wait_ms") == 0 && json_is_integer(v) &&
		    json_integer_value(v) >= 0 && json_integer_value(v) <= 60000)
			cfg.start_wait_ms = json_integer_value(v);
		else if (dst && json_is_string(v) && strlen(json_string_value(v)) < cap)
			copy(dst, cap, json_string_value(v));
		else {
			snprintf(err, errlen, "%s: setting \"%s\" unknown or invalid", path, key);
			good = false;
		}
	}
	json_decref(c);
	if (good && strcmp(cfg.pinning, "systemd") != 0 && strcmp(cfg.pinning, "process") != 0 &&
	    strcmp(cfg.pinning, "cgroup") != 0) {
		snprintf(err, errlen, "pinning must be \"systemd\", \"cgroup\" or \"process\"");
		good = false;
	}
	return good;
}

/* The visibility variable of a vendor's runtime: GPUs are named by UUID, never index. */
static const char *visibility_var(const char *vendor)
{
	static const struct {
		const char *vendor, *var;
	} table[] = {{"nvidia", "CUDA_VISIBLE_DEVICES"},
		     {"amd", "ROCR_VISIBLE_DEVICES"},
		     {"ascend", "ASCEND_RT_VISIBLE_DEVICES"},
		     {"cambricon", "MLU_VISIBLE_DEVICES"}};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strcmp(table[i].vendor, vendor) == 0)
			return table[i].var;
	return NULL;
}

/* ---------- inventory ---------- */

static bool add_device(const char *uuid, const char *name, const char *node, bool healthy)
{
	if (n_inv == DEVICES_MAX || uuid == NULL || *uuid == '\0' || strlen(uuid) >= 96)
		return false;
	struct device *d = &inv[n_inv++];
	copy(d->uuid, sizeof(d->uuid), uuid);
	copy(d->name, sizeof(d->name), name);
	copy(d->node, sizeof(d->node), node);
	d->healthy = healthy;
	return true;
}

static bool inventory_fixture(void)
{
	json_error_t je;
	json_t *a = json_load_file(cfg.inventory_file, 0, &je);
	size_t i;
	json_t *d;
	bool good = json_is_array(a);
	json_array_foreach(a, i, d)
	{
		json_t *h = json_object_get(d, "healthy");
		good = good && add_device(json_string_value(json_object_get(d, "uuid")),
					  json_string_value(json_object_get(d, "name")),
					  json_string_value(json_object_get(d, "node")),
					  h == NULL || json_is_true(h));
	}
	json_decref(a);
	return good;
}

/* NVML, loaded at run time: no build or package dependency on the NVIDIA driver. */
static bool inventory_nvml(void)
{
	void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL)
		return false;
	typedef int (*init_fn)(void);
	typedef int (*count_fn)(unsigned int *);
	typedef int (*handle_fn)(unsigned int, void **);
	typedef int (*text_fn)(void *, char *, unsigned int);
	typedef int (*minor_fn)(void *, unsigned int *);
	init_fn init, shutdown;
	count_fn count;
	handle_fn handle;
	text_fn uuid, name;
	minor_fn minor;
	/* POSIX's way from dlsym's void * to a function pointer. */
	*(void **)&init = dlsym(lib, "nvmlInit_v2");
	*(void **)&shutdown = dlsym(lib, "nvmlShutdown");
	*(void **)&count = dlsym(lib, "nvmlDeviceGetCount_v2");
	*(void **)&handle = dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
	*(void **)&uuid = dlsym(lib, "nvmlDeviceGetUUID");
	*(void **)&name = dlsym(lib, "nvmlDeviceGetName");
	*(void **)&minor = dlsym(lib, "nvmlDeviceGetMinorNumber");
	unsigned int n = 0;
	bool good = init && shutdown && count && handle && uuid && name && minor && init() == 0;
	if (good && count(&n) == 0) {
		for (unsigned int i = 0; i < n; i++) {
			void *h;
			char u[96] = "", nm[96] = "", node[64] = "";
			unsigned int m;
			if (handle(i, &h) != 0 || uuid(h, u, sizeof(u)) != 0)
				continue;
			if (name(h, nm, sizeof(nm)) != 0)
				nm[0] = '\0';
			if (minor(h, &m) == 0)
				snprintf(node, sizeof(node), "/dev/nvidia%u", m);
			add_device(u, nm, node, true);
		}
	}
	if (init && shutdown && good)
		shutdown();
	dlclose(lib);
	return good;
}

/* Runs argv, returning its stdout (free it) or NULL. */
static char *capture(char *const argv[])
{
	int p[2];
	if (pipe(p) != 0)
		return NULL;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	size_t cap = 4096, len = 0;
	char *out = malloc(cap);
	ssize_t r;
	while (out && (r = read(p[0], out + len, cap - len - 1)) > 0) {
		len += (size_t)r;
		if (cap - len < 2) {
			char *o = realloc(out, cap *= 2);
			if (o == NULL) {
				free(out);
				out = NULL;
			}
			out = o;
		}
	}
	close(p[0]);
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		free(out);
		return NULL;
	}
	if (out)
		out[len] = '\0';
	return out;
}

static void trim(char *s)
{
	while (*s == ' ')
		memmove(s, s + 1, strlen(s));
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

static bool inventory_smi(void)
{
	char *argv[] = {cfg.nvidia_smi, "--query-gpu=uuid,name,minor_number",
			"--format=csv,noheader", NULL};
	char *out = capture(argv);
	if (out == NULL)
		return false;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		char *f[3] = {line, NULL, NULL};
		for (int i = 1; i < 3 && f[i - 1]; i++) {
			f[i] = strchr(f[i - 1], ',');
			if (f[i])
				*f[i]++ = '\0';
		}
		if (f[2] == NULL)
			continue;
		for (int i = 0; i < 3; i++)
			trim(f[i]);
		char node[64];
		snprintf(node, sizeof(node), "/dev/nvidia%s", f[2]);
		add_device(f[0], f[1], node, true);
	}
	free(out);
	return true;
}

static bool load_inventory(void)
{
	n_inv = 0;
	if (cfg.inventory_file[0])
		return inventory_fixture();
	return inventory_nvml() || inventory_smi();
}

static const struct device *device_of(const char *uuid)
{
	for (size_t i = 0; i < n_inv; i++)
		if (strcmp(inv[i].uuid, uuid) == 0)
			return &inv[i];
	return NULL;
}

/* ---------- state: every lease this host runs, written atomically ---------- */

static json_t *state;

static void state_path(char *out, size_t cap, const char *suffix)
{
	snprintf(out, cap, "%s/leases.json%s", cfg.state_dir, suffix);
}

static bool state_load(void)
{
	char path[600];
	state_path(path, sizeof(path), "");
	json_error_t je;
	state = json_load_file(path, 0, &je);
	if (state == NULL && access(path, F_OK) != 0)
		state = json_object();
	return json_is_object(state);
}

static bool state_save(void)
{
	char tmp[600], path[600];
	state_path(tmp, sizeof(tmp), ".tmp");
	state_path(path, sizeof(path), "");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return false;
	char *text = json_dumps(state, JSON_INDENT(1) | JSON_SORT_KEYS);
	size_t len = text ? strlen(text) : 0;
	bool good = text && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
	free(text);
	good = close(fd) == 0 && good && rename(tmp, path) == 0;
	int d = open(cfg.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d >= 0) {
		fsync(d);
		close(d);
	}
	return good;
}

/* The process group of a running process (from /proc/PID/stat), or -1 for a process
 * that is gone or a zombie. */
static int pgid_of(const char *pid)
{
	char path[300], buf[512];
	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')'), st;
	int ppid, pg;
	if (p == NULL || sscanf(p + 1, " %c %d %d", &st, &ppid, &pg) != 3 || st == 'Z' || st == 'X')
		return -1;
	return pg;
}

/* Whether a process group still has a live (not zombie) member. */
static bool group_alive(pid_t pgid)
{
	if (pgid <= 1)
		return false;
	DIR *d = opendir("/proc");
	bool alive = false;
	for (struct dirent *e; d && !alive && (e = readdir(d)) != NULL;)
		if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && pgid_of(e->d_name) == pgid)
			alive = true;
	if (d)
		closedir(d);
	return alive;
}

/* ---------- the workload ---------- */

static bool token_ok(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	return n >= 1 && n <= max &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") == n;
}

/* argv and envp of the workload: its env, the visibility variable, the lease id. */
static bool workload_of(const json_t *req, const char *lease, const char *devices, char ***argv,
			char ***envp)
{
	const json_t *w = json_object_get(req, "workload");
	const json_t *cmd = json_object_get(w, "command"), *env = json_object_get(w, "env");
	size_t n = json_array_size(cmd);
	if (!json_is_array(cmd) || n == 0 || n > 256 || (env && !json_is_object(env)))
		return false;
	*argv = calloc(n + 1, sizeof(char *));
	*envp = calloc(json_object_size(env) + 4, sizeof(char *));
	if (*argv == NULL || *envp == NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!json_is_string(json_array_get(cmd, i)) ||
		    ((*argv)[i] = strdup(json_string_value(json_array_get(cmd, i)))) == NULL)
			return false;
	size_t k = 0;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)env, key, v)
	{
		if (!json_is_string(v) || strchr(key, '=') || *key == '\0' ||
		    strcmp(key, visibility_var(cfg.vendor)) == 0 ||
		    asprintf(&(*envp)[k++], "%s=%s", key, json_string_value(v)) < 0)
			return false;
	}
	if (asprintf(&(*envp)[k++], "%s=%s", visibility_var(cfg.vendor), devices) < 0 ||
	    asprintf(&(*envp)[k++], "GRIDEX_LEASE_ID=%s", lease) < 0 ||
	    (json_object_get(env, "PATH") == NULL &&
	     asprintf(&(*envp)[k++], "PATH=/usr/local/bin:/usr/bin:/bin") < 0))
		return false;
	return true;
}

static void free_strings(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/*
 * "process" pinning: a supervisor in a session and process group of its own
 * runs the workload in that group and ends it at end_ms (SIGTERM to the
 * group, the grace period, SIGKILL), then kills whatever is left of the group.
 * Returns the supervisor's pid, which is the group's id.
 */
static pid_t start_supervised(char **argv, char **envp, int64_t end_ms, int64_t grace_ms,
			      const char *log_path, const char *cgroup)
{
	int ready[2];
	if (pipe(ready) != 0)
		return -1;
	pid_t first = fork();
	if (first < 0)
		return -1;
	if (first == 0) {
		/* Nothing of the agent's: its stdout and stderr are the hook's result and log,
		 * which stay open until every process holding them is gone. */
		int nul = open("/dev/null", O_RDWR);
		int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (nul < 0 || log < 0 || dup2(nul, 0) < 0 || dup2(log, 1) < 0 ||
		    dup2(log, 2) < 0 || setsid() < 0)
			_exit(1);
		pid_t sup = fork();
		if (sup != 0)
			_exit(sup < 0); /* the supervisor lives on, reparented */
		/* The supervisor: its own process group, which the workload joins. It ignores
		 * the SIGTERM it sends the group at the window's end. */
		if (setpgid(0, 0) != 0)
			_exit(1);
		signal(SIGTERM, SIG_IGN);
		pid_t me = getpid();
		if (write(ready[1], &me, sizeof(me)) != sizeof(me))
			_exit(1);
		closefrom(3);
		pid_t child = fork();
		if (child == 0) {
			signal(SIGTERM, SIG_DFL);
			/* Never unconfined: without its device cgroup the workload does not run. */
			if (cgroup[0] != '\0' && !devcg_join(cgroup, getpid())) {
				fprintf(stderr, "gridex-provider: cannot join %s: %s\n", cgroup,
					strerror(errno));
				_exit(126);
			}
			execve(argv[0], argv, envp);
			fprintf(stderr, "gridex-provider: cannot run %s: %s\n", argv[0],
				strerror(errno));
			_exit(127);
		}
		int status = 0;
		bool terminated = false;
		for (;;) {
			pid_t got = waitpid(child, &status, WNOHANG);
			if (got == child)
				break;
			int64_t t = now_ms();
			if (!terminated && t >= end_ms) {
				kill(-me, SIGTERM); /* the workload's group; we ignore it */
				terminated = true;
			}
			if (terminated && t >= end_ms + grace_ms)
				kill(child, SIGKILL);
			struct timespec pause = {.tv_nsec = 20000000};
			nanosleep(&pause, NULL);
		}
		fprintf(stderr, "gridex-provider: workload exited (status %d)%s\n",
			WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
			terminated ? " at the end of its window" : "");
		killpg(me, SIGKILL); /* anything it left behind, and the supervisor */
		_exit(0);
	}
	close(ready[1]);
	pid_t sup = -1;
	if (read(ready[0], &sup, sizeof(sup)) != sizeof(sup))
		sup = -1;
	close(ready[0]);
	waitpid(first, NULL, 0);
	return sup;
}

/* Shared nodes a vendor's runtime opens besides each GPU's own (those that exist). */
static size_t control_nodes(const char *out[], size_t cap)
{
	static const char *const nvidia[] = {"/dev/nvidiactl", "/dev/nvidia-uvm",
					     "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset", NULL};
	static const char *const amd[] = {"/dev/kfd", NULL};
	static const char *const ascend[] = {"/dev/davinci_manager", "/dev/devmm_svm",
					     "/dev/hisi_hdc", NULL};
	static const char *const cambricon[] = {"/dev/cambricon_ctl", NULL};
	const char *const *list = strcmp(cfg.vendor, "nvidia") == 0	 ? nvidia
				  : strcmp(cfg.vendor, "amd") == 0	 ? amd
				  : strcmp(cfg.vendor, "ascend") == 0	 ? ascend
				  : strcmp(cfg.vendor, "cambricon") == 0 ? cambricon
									 : NULL;
	size_t n = 0;
	for (size_t i = 0; list && list[i] && n < cap; i++)
		if (access(list[i], F_OK) == 0)
			out[n++] = list[i];
	return n;
}

/* "systemd" pinning: a transient unit that can open the leased device nodes only. */
static bool start_systemd(const char *lease, char **argv, char **envp, int64_t end_ms,
			  int64_t grace_ms, const char *devices_nodes[], size_t n_nodes)
{
	char *args[512];
	size_t n = 0;
	char unit[160], runtime[64], stop[64];
	snprintf(unit, sizeof(unit), "--unit=gridex-lease-%s", lease);
	int64_t secs = (end_ms - now_ms() + 999) / 1000;
	snprintf(runtime, sizeof(runtime), "--property=RuntimeMaxSec=%lld",
		 (long long)(secs > 0 ? secs : 1));
	snprintf(stop, sizeof(stop), "--property=TimeoutStopSec=%lldms", (long long)grace_ms);
	args[n++] = cfg.systemd_run;
	args[n++] = unit;
	args[n++] = "--collect";
	args[n++] = "--property=DevicePolicy=closed";
	char *allow[DEVICES_MAX] = {0};
	for (size_t i = 0; i < n_nodes && i < DEVICES_MAX; i++)
		if (asprintf(&allow[i], "--property=DeviceAllow=%s rw", devices_nodes[i]) >= 0)
			args[n++] = allow[i];
	args[n++] = runtime;
	args[n++] = stop;
	char *setenv_args[260] = {0};
	for (size_t i = 0; envp[i] && i < 256; i++)
		if (asprintf(&setenv_args[i], "--setenv=%s", envp[i]) >= 0)
			args[n++] = setenv_args[i];
	args[n++] = "--";
	for (size_t i = 0; argv[i] && n < 510; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	char *out = capture(args);
	bool good = out != NULL;
	free(out);
	for (size_t i = 0; i < DEVICES_MAX; i++)
		free(allow[i]);
	for (size_t i = 0; i < 260; i++)
		free(setenv_args[i]);
	return good;
}

/* GPU processes of the lease's group on devices it does not hold (nvidia-smi). */
static bool on_foreign_device(pid_t pgid, const json_t *devices, char *which, size_t cap)
{
	char *argv[] = {cfg.nvidia_smi, "--query-compute-apps=pid,gpu_uuid",
			"--format=csv,noheader", NULL};
	char *out = capture(argv);
	bool foreign = false;
	for (char *line = out ? strtok(out, "\n") : NULL; line && !foreign;
	     line = strtok(NULL, "\n")) {
		char *comma = strchr(line, ',');
		if (comma == NULL)
			continue;
		*comma = '\0';
		trim(line);
		trim(comma + 1);
		if (strspn(line, "0123456789") != strlen(line) || pgid_of(line) != pgid)
			continue;
		bool leased = false;
		for (size_t i = 0; i < json_array_size(devices); i++)
			leased |= strcmp(json_string_value(json_array_get(devices, i)),
					 comma + 1) == 0;
		if (!leased) {
			snprintf(which, cap, "process %s on %s", line, comma + 1);
			foreign = true;
		}
	}
	free(out);
	return foreign;
}

static void stop_group(pid_t pgid, int64_t grace_ms)
{
	if (!group_alive(pgid))
		return;
	killpg(pgid, SIGTERM);
	int64_t until = now_ms() + grace_ms;
	while (group_alive(pgid) && now_ms() < until) {
		struct timespec pause = {.tv_nsec = 20000000};
		nanosleep(&pause, NULL);
	}
	killpg(pgid, SIGKILL);
}

/* ---------- operations ---------- */

static int op_start(const json_t *req)
{
	const char *lease = json_string_value(json_object_get(req, "lease_id"));
	const json_t *devices = json_object_get(req, "devices");
	const json_t *window = json_object_get(req, "window");
	json_int_t end_ms = json_integer_value(json_object_get(window, "end_ms"));
	json_int_t grace_ms = json_integer_value(json_object_get(req, "grace_ms"));
	if (!token_ok(lease, 64) || !json_is_array(devices) || json_array_size(devices) == 0 ||
	    json_array_size(devices) > DEVICES_MAX ||
	    !json_is_integer(json_object_get(window, "end_ms")) || grace_ms < 0 ||
	    grace_ms > 600000)
		return fail("bad_request", false,
			    "start needs lease_id, devices, window.end_ms and grace_ms");
	json_t *have = json_object_get(state, lease);
	if (have && json_is_integer(json_object_get(have, "pgid")) &&
	    (strcmp(cfg.pinning, "systemd") == 0 ||
	     group_alive((pid_t)json_integer_value(json_object_get(have, "pgid")))))
		return finish(ok_result(lease, "running")); /* idempotent */
	if (end_ms <= now_ms())
		return fail("workload_failed", false, "the lease's window has ended");
	if (visibility_var(cfg.vendor) == NULL)
		return fail("bad_request", false, "no visibility variable for vendor %s",
			    cfg.vendor);
	/* Every leased device is here, healthy, and held by no other running lease. */
	char list[DEVICES_MAX * 97] = "";
	const char *nodes[DEVICES_MAX + 8];
	for (size_t i = 0; i < json_array_size(devices); i++) {
		const char *u = json_string_value(json_array_get(devices, i));
		const struct device *d = u ? device_of(u) : NULL;
		if (d == NULL)
			return fail("not_enough_devices", false, "device %s is not on this host",
				    u ? u : "(not a string)");
		if (!d->healthy)
			return fail("device_unhealthy", false, "device %s is unhealthy", u);
		const char *other;
		json_t *l;
		json_object_foreach(state, other, l)
		{
			json_t *ds = json_object_get(l, "devices");
			bool running =
				strcmp(cfg.pinning, "systemd") == 0 ||
				group_alive((pid_t)json_integer_value(json_object_get(l, "pgid")));
			for (size_t k = 0; running && k < json_array_size(ds); k++)
				if (strcmp(json_string_value(json_array_get(ds, k)), u) == 0 &&
				    strcmp(other, lease) != 0)
					return fail("not_enough_devices", false,
						    "device %s is leased to %s", u, other);
		}
		nodes[i] = d->node;
		if (i)
			strcat(list, ",");
		strcat(list, u);
	}
	char **argv = NULL, **envp = NULL;
	if (!workload_of(req, lease, list, &argv, &envp)) {
		free_strings(argv);
		free_strings(envp);
		return fail("workload_failed", false,
			    "workload needs \"command\": [strings] and \"env\": {strings}");
	}
	char log_path[700];
	snprintf(log_path, sizeof(log_path), "%s/%s.log", cfg.state_dir, lease);
	size_t n_nodes = json_array_size(devices);
	n_nodes += control_nodes(nodes + n_nodes, 8);
	char cgroup[700] = "";
	if (strcmp(cfg.pinning, "cgroup") == 0) {
		char name[160], why[400];
		snprintf(name, sizeof(name), "gridex-lease-%s", lease);
		if (!devcg_create(cfg.cgroup_dir, name, nodes, n_nodes, cgroup, sizeof(cgroup), why,
				  sizeof(why))) {
			free_strings(argv);
			free_strings(envp);
			return fail("pinning_failed", false, "no device allow-list: %s", why);
		}
	}
	pid_t pgid = 0;
	bool started = true;
	if (strcmp(cfg.pinning, "systemd") == 0)
		started = start_systemd(lease, argv, envp, end_ms, grace_ms, nodes, n_nodes);
	else
		started = (pgid = start_supervised(argv, envp, end_ms, grace_ms, log_path,
						   cgroup)) > 0;
	free_strings(argv);
	free_strings(envp);
	if (!started)
		devcg_remove(cgroup);
	if (!started)
		return strcmp(cfg.pinning, "systemd") == 0
			       ? fail("workload_failed", false, "systemd-run refused the unit")
			       : fail("internal", true, "cannot start the supervisor: %s",
				      strerror(errno));
	json_object_set_new(state, lease,
			    json_pack("{s:O, s:I, s:I, s:I, s:s, s:s}", "devices", devices, "pgid",
				      (json_int_t)pgid, "end_ms", end_ms, "grace_ms", grace_ms,
				      "pinning", cfg.pinning, "cgroup", cgroup));
	if (!state_save())
		return fail("internal", true, "cannot write the state in %s", cfg.state_dir);
	/* Still there after the start-up wait, and on leased devices only. */
	int64_t until = now_ms() + cfg.start_wait_ms;
	while (pgid > 0 && now_ms() < until && group_alive(pgid)) {
		struct timespec pause = {.tv_nsec = 50000000};
		nanosleep(&pause, NULL);
	}
	if (pgid > 0 && !group_alive(pgid) && now_ms() < end_ms)
		return fail("workload_failed", false, "the workload exited at once (log: %s)",
			    log_path);
	char which[200];
	if (pgid > 0 && on_foreign_device(pgid, devices, which, sizeof(which))) {
		stop_group(pgid, grace_ms);
		return fail("workload_failed", false, "%s, not leased: stopped", which);
	}
	return finish(ok_result(lease, "running"));
}

/* Ends a lease's workload however it was pinned, and forgets it (save the state). */
static void stop_lease(const char *lease, json_t *entry)
{
	const char *pinning = json_string_value(json_object_get(entry, "pinning"));
	if (pinning && strcmp(pinning, "systemd") == 0) {
		char unit[160];
		snprintf(unit, sizeof(unit), "gridex-lease-%s.service", lease);
		char *argv[] = {cfg.systemctl, "stop", unit, NULL};
		free(capture(argv));
	} else {
		stop_group((pid_t)json_integer_value(json_object_get(entry, "pgid")),
			   json_integer_value(json_object_get(entry, "grace_ms")));
		const char *cg = json_string_value(json_object_get(entry, "cgroup"));
		if (cg)
			devcg_remove(cg);
	}
	json_object_del(state, lease);
}

static int op_stop(const json_t *req)
{
	const char *lease = json_string_value(json_object_get(req, "lease_id"));
	if (!token_ok(lease, 64))
		return fail("bad_request", false, "stop needs lease_id");
	json_t *have = json_object_get(state, lease);
	if (have == NULL)
		return finish(ok_result(lease, "stopped")); /* unknown: nothing to stop */
	stop_lease(lease, have);
	if (!state_save())
		return fail("internal", true, "cannot write the state in %s", cfg.state_dir);
	return finish(ok_result(lease, "stopped"));
}

static int op_status(const json_t *req)
{
	const char *lease = json_string_value(json_object_get(req, "lease_id"));
	if (!token_ok(lease, 64))
		return fail("bad_request", false, "status needs lease_id");
	json_t *have = json_object_get(state, lease);
	if (have == NULL)
		return finish(ok_result(lease, "unknown"));
	bool running;
	const char *pinning = json_string_value(json_object_get(have, "pinning"));
	if (pinning && strcmp(pinning, "systemd") == 0) {
		char unit[160];
		snprintf(unit, sizeof(unit), "gridex-lease-%s.service", lease);
		char *argv[] = {cfg.systemctl, "is-active", "--quiet", unit, NULL};
		char *out = capture(argv); /* exit 0: active */
		running = out != NULL;
		free(out);
	} else {
		running = group_alive((pid_t)json_integer_value(json_object_get(have, "pgid")));
	}
	bool ended = now_ms() >= json_integer_value(json_object_get(have, "end_ms"));
	return finish(ok_result(lease, running ? "running" : ended ? "completed" : "failed"));
}

/* Stops what should not run; starts what should and does not. */
static int op_reconcile(const json_t *req)
{
	const json_t *leases = json_object_get(req, "leases");
	if (!json_is_array(leases))
		return fail("bad_request", false, "reconcile needs \"leases\": [...]");
	json_t *keep = json_object();
	size_t i;
	json_t *l;
	json_array_foreach(leases, i, l)
	{
		const char *id = json_string_value(json_object_get(l, "lease_id"));
		if (token_ok(id, 64))
			json_object_set_new(keep, id, json_true());
	}
	const char *id;
	json_t *v, *tmp;
	int stopped = 0;
	json_object_foreach_safe(state, tmp, id, v)
	{
		if (json_object_get(keep, id))
			continue;
		stop_lease(id, v);
		stopped++;
	}
	json_decref(keep);
	int started = 0;
	json_array_foreach(leases, i, l)
	{
		json_t *have =
			json_object_get(state, json_string_value(json_object_get(l, "lease_id")));
		if (have && group_alive((pid_t)json_integer_value(json_object_get(have, "pgid"))))
			continue;
		/* One start per missing lease; its result goes to the log, not stdout. */
		quiet = true;
		int rc = op_start(l);
		quiet = false;
		if (rc != 0) {
			fprintf(stderr, "gridex-provider: reconcile could not start %s\n",
				json_string_value(json_object_get(l, "lease_id")));
			return fail("internal", true,
				    "a lease that should run could not be started");
		}
		started++;
	}
	if (!state_save())
		return fail("internal", true, "cannot write the state in %s", cfg.state_dir);
	json_t *r = ok_result("", "reconciled");
	json_object_set_new(r, "stopped", json_integer(stopped));
	json_object_set_new(r, "started", json_integer(started));
	return finish(r);
}

int main(int argc, char **argv)
{
	const char *config = CONFIG_DEFAULT, *op = NULL;
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--config=", 9) == 0)
			config = argv[i] + 9;
		else if (op == NULL)
			op = argv[i];
		else
			op = "";
	}
	if (op == NULL || *op == '\0') {
		fprintf(stderr, "usage: gridex-provider [--config=FILE] "
				"start|stop|status|reconcile|inventory  (request on stdin)\n");
		return 2;
	}
	char err[700];
	if (!load_config(config, err, sizeof(err)))
		return fail("internal", true, "configuration: %s", err);
	if (!load_inventory())
		return fail("internal", true, "no device inventory (fixture, NVML or nvidia-smi)");
	if (strcmp(op, "inventory") == 0) {
		json_t *a = json_array();
		for (size_t i = 0; i < n_inv; i++)
			json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:b}", "uuid",
							   inv[i].uuid, "name", inv[i].name, "node",
							   inv[i].node, "healthy", inv[i].healthy));
		json_dumpf(a, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(a);
		return 0;
	}
	if (mkdir(cfg.state_dir, 0700) != 0 && errno != EEXIST)
		return fail("internal", true, "cannot create %s: %s", cfg.state_dir,
			    strerror(errno));
	/* One call at a time per state directory, held until exit: gridexd calls the hook
	 * for several hosts at once, and they may share a machine. */
	char lock_path[600];
	snprintf(lock_path, sizeof(lock_path), "%s/lock", cfg.state_dir);
	int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock < 0 || flock(lock, LOCK_EX) != 0)
		return fail("internal", true, "cannot lock %s: %s", lock_path, strerror(errno));
	if (!state_load())
		return fail("internal", true, "the state file in %s is damaged", cfg.state_dir);
	json_error_t je;
	json_t *req = json_loadf(stdin, JSON_REJECT_DUPLICATES, &je);
	int rc;
	if (!json_is_object(req) || json_integer_value(json_object_get(req, "version")) != 1)
		rc = fail("bad_request", false, "the request is not a version 1 object%s%s",
			  req ? "" : ": ", req ? "" : je.text);
	else if (strcmp(op, "start") == 0)
		rc = op_start(req);
	else if (strcmp(op, "stop") == 0)
		rc = op_stop(req);
	else if (strcmp(op, "status") == 0)
		rc = op_status(req);
	else if (strcmp(op, "reconcile") == 0)
		rc = op_reconcile(req);
	else
		rc = fail("bad_request", false, "unknown operation %s", op);
	json_decref(req);
	json_decref(state);
	return rc;
}
