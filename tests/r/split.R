# A workload with a known split of time between two functions: alpha does 7 units of the
# same work for every 3 units beta does (70/30), finely interleaved so that any sampler sees
# the same mix whatever its phase. The split is also measured inside R with proc.time().
# Usage: Rscript split.R CPU_SECONDS [--report=FILE] [--rprof=FILE]
#   --report  write "alpha_seconds beta_seconds" (CPU time) as measured inside R
#   --rprof   profile the run with R's own Rprof(interval = 0.01) into FILE
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args) && !startsWith(args[[1]], "--")) as.numeric(args[[1]]) else 10
option <- function(name) {
  hit <- grep(paste0("^--", name, "="), args, value = TRUE)
  if (length(hit)) sub(paste0("^--", name, "="), "", hit[[1]]) else ""
}
report <- option("report")
rprof <- option("rprof")

spin <- function(n) {
  x <- 0
  for (i in seq_len(n)) x <- x + sqrt(i)
  x
}
unit <- 175000L # alpha ~35 ms, beta ~15 ms a round: long next to timer jitter (ticks, preemption)
alpha <- function() spin(7L * unit)
beta <- function() spin(3L * unit)

# CPU time, not wall time: on a loaded machine R's Rprof (which counts CPU time) still gets
# `seconds` x 100 samples, and the split does not depend on how often R was preempted.
cpu <- function() {
  t <- proc.time()
  t[["user.self"]] + t[["sys.self"]]
}

run <- function(seconds) {
  spent <- c(alpha = 0, beta = 0)
  started <- cpu()
  while (cpu() - started < seconds) {
    t0 <- cpu()
    alpha()
    t1 <- cpu()
    beta()
    t2 <- cpu()
    spent <- spent + c(t1 - t0, t2 - t1)
  }
  spent
}

invisible(run(0.3)) # byte-compile and warm up before anyone measures
path <- Sys.getenv("XRTOP_READY")
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
if (nzchar(rprof)) Rprof(rprof, interval = 0.01)
spent <- run(seconds)
if (nzchar(rprof)) Rprof(NULL)
if (nzchar(report)) writeLines(format(spent, digits = 10), report)
cat(sprintf("alpha %.1f%%, beta %.1f%% of %.1f s\n",
            100 * spent[["alpha"]] / sum(spent), 100 * spent[["beta"]] / sum(spent), sum(spent)))
