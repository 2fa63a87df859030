/* Busy loops for R's .C, .Call and .External (tests/test_builtins.py).
 *
 * No library calls and no R API: built with -nostdlib, one file loads in every R of the lab
 * whatever its C library, and needs no compiler inside the chroots. A SEXP is only passed
 * through, so the .Call and .External entry points need no R headers either.
 */

typedef void *SEXP;

static volatile double sink;

static void spin(long n)
{
    double s = 0;
    for (long i = 0; i < n; i++)
        s += (double) i * 0.5;
    sink = s;
}

void xrtop_spin_c(int *n, double *out)
{
    spin((long) *n * 1000);
    *out = sink;
}

SEXP xrtop_spin_call(SEXP x)
{
    spin(2000000);
    return x;
}

SEXP xrtop_spin_external(SEXP args)
{
    spin(2000000);
    return args;
}
