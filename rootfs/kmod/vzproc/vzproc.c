// SPDX-License-Identifier: GPL-2.0
/*
 * vzproc: gives procfs the name /proc/user_beancounters.
 *
 * procfs has no way for user space to add a file, and a bind mount needs an
 * existing one. This module only creates the name; vmmgr binds its FUSE
 * view's user_beancounters (the reading VE's own beancounters, or every VE's
 * for the appliance) over it in each VE's mount namespace and in the
 * appliance's, as OpenVZ's kernel shows them. Read where nothing is bound
 * (vmmgr not running), the file has OpenVZ's header and no rows: no
 * beancounter is claimed that vmmgr did not compute.
 */
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>

static int ubc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "Version: 2.5\n%10s  %-12s %20s %20s %20s %20s %20s\n",
		   "uid", "resource", "held", "maxheld", "barrier", "limit",
		   "failcnt");
	return 0;
}

static struct proc_dir_entry *ubc;

static int __init vzproc_init(void)
{
	ubc = proc_create_single("user_beancounters", 0444, NULL, ubc_show);
	return ubc ? 0 : -ENOMEM;
}

static void __exit vzproc_exit(void)
{
	proc_remove(ubc);
}

module_init(vzproc_init);
module_exit(vzproc_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("The name /proc/user_beancounters, for vmmgr's view to be bound over");
