/*
 * Linked into server_a_linked only. A setuid process cannot read its own
 * /proc/self/environ, so a sanitizer runtime never sees ASAN_OPTIONS
 * there, and LeakSanitizer (which must ptrace the process) fails at exit.
 * Compiled-in defaults turn leak checking off for that copy; without a
 * sanitizer these functions are never called.
 */
const char *__asan_default_options(void);
const char *__lsan_default_options(void);

const char *
__asan_default_options(void)
{
	return "detect_leaks=0:abort_on_error=1";
}

const char *
__lsan_default_options(void)
{
	return "detect_leaks=0";
}
