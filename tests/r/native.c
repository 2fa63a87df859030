/* Compiled code for tests/test_native_live.py: R -> .C / .Call -> my_c_fun -> my_leaf, which
 * spins (a stable point for gdb). Only R's API of 4.0-4.6, no libc: the host's build loads
 * in every lab R. */
#include <R.h>
#include <Rinternals.h>

volatile double xrtop_sink;

void __attribute__((noinline)) my_leaf(int n)
{
    for (long i = 0; i < (long) n * 1000000L; i++)
        xrtop_sink += (double) i;
}

void __attribute__((noinline)) my_c_fun(int *n)
{
    my_leaf(*n);
    xrtop_sink += 1.0;
}

SEXP __attribute__((noinline)) my_call_fun(SEXP n)
{
    my_leaf(Rf_asInteger(n));
    xrtop_sink += 1.0;
    return R_NilValue;
}
