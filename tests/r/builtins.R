# Builtin-heavy code, byte-compiled and not: sum, mean, .C, .Call, .External, .Internal.
# Usage: Rscript builtins.R SECONDS, with XRTOP_SPIN_SO the built tests/r/spin.c,
# XRTOP_RPROF a file for R's own Rprof and XRTOP_RPROF_OFF a file to write once it stopped.
# R's Rprof records the first SECONDS of the workload (R opens builtin contexts then), from
# the moment the PID is written to XRTOP_READY; then it stops, the XRTOP_RPROF_OFF file is
# written, and the workload runs SECONDS more (no builtin contexts exist then).
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args)) as.numeric(args[[1]]) else 60
invisible(compiler::enableJIT(0))  # byte code only where compiled below
spin <- dyn.load(Sys.getenv("XRTOP_SPIN_SO"))[["name"]]
x <- runif(2e5)  # not a compact sequence: ALTREP would sum those at once

use_sum <- function() { s <- 0; for (i in 1:10) s <- s + sum(x); s }
use_c <- function() .C("xrtop_spin_c", 3000L, 0)
# Unnamed .Call compiles to the DOTCALL instruction, which opens no context: no frame in R.
use_call <- function() .Call("xrtop_spin_call", x)
use_call_named <- function() .Call("xrtop_spin_call", x, PACKAGE = spin)
use_external <- function() for (i in 1:3) .External("xrtop_spin_external", x)
# mean.default ends in .Internal(mean(x)): an internal builtin, no frame in R.
use_internal <- function() for (i in 1:10) mean(x)
nested <- function() { use_sum(); use_c() }
# A builtin that calls R code: length() dispatches to an S3 method, inside the builtin.
spin_r <- function(n) { s <- 0; for (i in seq_len(n)) s <- s + i; s }
length.spinning <- function(x) { spin_r(30000); 1L }
use_dispatch <- function() length(structure(list(), class = "spinning"))
# Not compiled: R's eval opens the context of a foreign builtin itself.
ast_c <- function() .C("xrtop_spin_c", 3000L, 0)
for (name in c("use_sum", "use_c", "use_call", "use_call_named", "use_external",
               "use_internal", "nested", "spin_r", "length.spinning", "use_dispatch")) {
  assign(name, compiler::cmpfun(get(name)))
}
# Each round calls them in a new random order: a round repeats in a near constant time,
# and calls in a fixed order would put the same call at the same moments of every round,
# where a profiler sampling at a steady rate (R's own, or xrtop's) could meet it round
# after round, or never. Each call is written out, so its frame is named as before.
set.seed(7)
round_of_builtins <- compiler::cmpfun(function() {
  for (k in sample.int(9L)) {
    switch(k, use_sum(), use_c(), use_call(), use_call_named(), use_external(),
           use_internal(), nested(), use_dispatch(), ast_c())
  }
})

run_for <- function(seconds) {
  deadline <- proc.time()[[3]] + seconds
  while (proc.time()[[3]] < deadline) round_of_builtins()
}
interval <- if (getRversion() >= "4.3.0") 0.01 else 0.002
rprof <- Sys.getenv("XRTOP_RPROF")
invisible(round_of_builtins())
path <- Sys.getenv("XRTOP_READY")
Rprof(rprof, interval = interval)
writeLines(as.character(Sys.getpid()), path)
run_for(seconds)
Rprof(NULL)
writeLines("off", Sys.getenv("XRTOP_RPROF_OFF"))
run_for(seconds)
