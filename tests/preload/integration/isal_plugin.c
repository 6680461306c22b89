/*
 * isal_plugin — a host library that isal_host dlopens RTLD_GLOBAL: it
 * defines a function under a name libisal.so.2 also exports. Looked up by
 * name it must be found here, not in an ISA-L the interposer loaded.
 */
int plugin_stamp(void);
void isal_deflate_init(void *unused);

static int stamped;

int
plugin_stamp(void)
{
	return stamped;
}

void
isal_deflate_init(void *unused)
{
	(void)unused;
	stamped = 1;
}
