/* noentry.c: a shared object that is not an mqhub plugin (no
 * mqhub_plugin_entry): mqhubd must refuse it. */
__attribute__((visibility("default"))) int not_a_plugin(void);

__attribute__((visibility("default"))) int not_a_plugin(void)
{
    return 42;
}
