/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include "devcg.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define RULES_MAX 96

struct rule {
	char type;     /* 'c' or 'b' */
	int64_t major; /* -1: any */
	int64_t minor; /* -1: any */
};

/* What every program may open (as systemd's DevicePolicy=closed allows): null, zero,
 * full, random, urandom, tty, ptmx and the pseudo-terminals. */
static const struct rule pseudo[] = {
	{'c', 1, 3}, {'c', 1, 5}, {'c', 1, 7},	  {'c', 1, 8}, {'c', 1, 9},
	{'c', 5, 0}, {'c', 5, 2}, {'c', 136, -1}, {'c', 5, 1},
};

static bool write_text(const char *dir, const char *file, const char *text)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", dir, file);
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = write(fd, text, strlen(text));
	int e = errno;
	close(fd);
	errno = e;
	return n == (ssize_t)strlen(text);
}

static bool is_file(const char *dir, const char *file)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", dir, file);
	return access(p, F_OK) == 0;
}

/* ---------- cgroup v1 ---------- */

static bool v1_rules(const char *path, const struct rule *r, size_t n)
{
	if (!write_text(path, "devices.deny", "a"))
		return false;
	for (size_t i = 0; i < n; i++) {
		char line[64], maj[24], min[24];
		snprintf(maj, sizeof(maj), "%lld", (long long)r[i].major);
		snprintf(min, sizeof(min), "%lld", (long long)r[i].minor);
		snprintf(line, sizeof(line), "%c %s:%s rwm", r[i].type, r[i].major < 0 ? "*" : maj,
			 r[i].minor < 0 ? "*" : min);
		if (!write_text(path, "devices.allow", line))
			return false;
	}
	return true;
}

/* ---------- cgroup v2: a device program ---------- */

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
	return (struct bpf_insn){
		.code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
}

/* r2 = device type, r4 = major, r5 = minor; each rule: on a match return 1; else 0. */
static size_t v2_program(const struct rule *r, size_t n, struct bpf_insn *p)
{
	size_t k = 0;
	p[k++] = insn(BPF_LDX | BPF_W | BPF_MEM, BPF_REG_2, BPF_REG_1, 0, 0);
	p[k++] = insn(BPF_ALU64 | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xffff);
	p[k++] = insn(BPF_LDX | BPF_W | BPF_MEM, BPF_REG_4, BPF_REG_1, 4, 0);
	p[k++] = insn(BPF_LDX | BPF_W | BPF_MEM, BPF_REG_5, BPF_REG_1, 8, 0);
	for (size_t i = 0; i < n; i++) {
		/* tests, mov, exit; a failed test jumps over the rest of the rule */
		int16_t left = (int16_t)(3 + (r[i].major >= 0) + (r[i].minor >= 0));
		int32_t type = r[i].type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR;
		p[k++] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_2, 0, --left, type);
		if (r[i].major >= 0)
			p[k++] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_4, 0, --left,
				      (int32_t)r[i].major);
		if (r[i].minor >= 0)
			p[k++] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_5, 0, --left,
				      (int32_t)r[i].minor);
		p[k++] = insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1);
		p[k++] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
	}
	p[k++] = insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);
	p[k++] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
	return k;
}

static bool v2_rules(const char *path, const struct rule *r, size_t n, char *err, size_t cap)
{
	struct bpf_insn prog[4 + RULES_MAX * 5 + 2];
	size_t len = v2_program(r, n, prog);
	char log[4096] = "";
	union bpf_attr a;
	int pfd = -1;
	/* Without the verifier's log first (a log too small for it fails the load); with it
	 * only to tell why it failed. */
	for (int with_log = 0; pfd < 0 && with_log < 2; with_log++) {
		memset(&a, 0, sizeof(a));
		a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
		a.insns = (uint64_t)(uintptr_t)prog;
		a.insn_cnt = (uint32_t)len;
		a.license = (uint64_t)(uintptr_t) "Apache-2.0";
		if (with_log) {
			a.log_buf = (uint64_t)(uintptr_t)log;
			a.log_size = sizeof(log);
			a.log_level = 1;
		}
		pfd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof(a));
	}
	if (pfd < 0) {
		snprintf(err, cap, "cannot load the device program: %s%s%.200s", strerror(errno),
			 log[0] ? ": " : "", log);
		return false;
	}
	int cfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	memset(&a, 0, sizeof(a));
	a.target_fd = (uint32_t)cfd;
	a.attach_bpf_fd = (uint32_t)pfd;
	a.attach_type = BPF_CGROUP_DEVICE;
	a.attach_flags = BPF_F_ALLOW_MULTI;
	bool ok = cfd >= 0 && syscall(SYS_bpf, BPF_PROG_ATTACH, &a, sizeof(a)) == 0;
	if (!ok)
		snprintf(err, cap, "cannot attach the device program to %s: %s", path,
			 strerror(errno));
	if (cfd >= 0)
		close(cfd);
	close(pfd); /* the attachment keeps the program */
	return ok;
}

/* ---------- both ---------- */

bool devcg_create(const char *dir, const char *name, const char *const *nodes, size_t n, char *path,
		  size_t path_cap, char *err, size_t err_cap)
{
	struct rule r[RULES_MAX];
	size_t k = 0;
	for (size_t i = 0; i < sizeof(pseudo) / sizeof(pseudo[0]); i++)
		r[k++] = pseudo[i];
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (stat(nodes[i], &st) != 0 || !(S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) {
			snprintf(err, err_cap, "%s is not a device node", nodes[i]);
			return false;
		}
		if (k == RULES_MAX) {
			snprintf(err, err_cap, "too many device nodes");
			return false;
		}
		r[k++] = (struct rule){.type = S_ISCHR(st.st_mode) ? 'c' : 'b',
				       .major = major(st.st_rdev),
				       .minor = minor(st.st_rdev)};
	}
	if (dir[0] == '\0')
		dir = is_file("/sys/fs/cgroup/devices", "devices.allow") ? "/sys/fs/cgroup/devices"
									 : "/sys/fs/cgroup";
	bool v1 = is_file(dir, "devices.allow");
	if (!v1 && !is_file(dir, "cgroup.procs")) {
		snprintf(err, err_cap, "%s is no cgroup v1 devices or cgroup v2 hierarchy", dir);
		return false;
	}
	snprintf(path, path_cap, "%s/%s", dir, name);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		snprintf(err, err_cap, "cannot create the cgroup %s: %s", path, strerror(errno));
		return false;
	}
	bool ok = v1 ? v1_rules(path, r, k) : v2_rules(path, r, k, err, err_cap);
	if (!ok) {
		if (v1)
			snprintf(err, err_cap, "cannot set the device rules of %s: %s", path,
				 strerror(errno));
		rmdir(path);
	}
	return ok;
}

bool devcg_join(const char *path, pid_t pid)
{
	char text[24];
	snprintf(text, sizeof(text), "%d", (int)pid);
	return write_text(path, "cgroup.procs", text);
}

void devcg_remove(const char *path)
{
	if (path[0] != '\0')
		rmdir(path);
}
