/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A device allow-list for a workload on hosts without systemd: a cgroup the
 * workload joins before it runs, in which only the listed device nodes (and
 * the harmless pseudo-devices every program needs) can be opened or created.
 * cgroup v1: the devices controller's devices.deny / devices.allow. cgroup v2:
 * a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the cgroup, as systemd
 * does for DevicePolicy=closed.
 */
#ifndef GRIDEX_PROVIDER_DEVCG_H
#define GRIDEX_PROVIDER_DEVCG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Makes the cgroup `name` under dir (a cgroup v1 devices hierarchy, which has
 * devices.allow, or a cgroup v2 hierarchy; "" picks /sys/fs/cgroup/devices,
 * then /sys/fs/cgroup) allowing nodes[0..n) (paths of character or block
 * devices) and the pseudo-devices; its path goes to path. false with the
 * reason in err (nothing is left behind).
 */
bool devcg_create(const char *dir, const char *name, const char *const *nodes, size_t n, char *path,
		  size_t path_cap, char *err, size_t err_cap);

/* Moves process pid into the cgroup at path (the workload, before it runs). */
bool devcg_join(const char *path, pid_t pid);

/* Removes the cgroup at path once it is empty (best effort). */
void devcg_remove(const char *path);

#endif
