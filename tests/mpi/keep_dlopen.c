/*
 * tests/mpi/keep_dlopen.c — dlclose that unloads nothing, LD_PRELOADed into
 * the sanitizer build's MPI tests.
 *
 * Open MPI dlopens its components and dlcloses them in MPI_Finalize; the
 * allocations they keep for the life of the process are then reported by
 * LeakSanitizer with "<unknown module>" stacks that no suppression can name.
 * With the components left loaded, the stacks name them and
 * mpi/lsan-openmpi.supp suppresses them. (Open MPI 4.1 has no MCA
 * parameter that keeps them loaded.)
 */
int dlclose(void *handle);

int dlclose(void *handle) {
    (void)handle;
    return 0;
}
