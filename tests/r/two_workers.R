# parallel::mclapply with two forked workers doing different work: worker 1 loops in
# crunch_sums, worker 2 recurses in crunch_fib; the parent waits for them.
# Usage: Rscript two_workers.R [SECONDS]
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args)) as.numeric(args[[1]]) else 60
crunch_sums <- function() { s <- 0; for (i in 1:20000) s <- s + sqrt(i); s }
fib <- function(n) if (n < 2) n else fib(n - 1) + fib(n - 2)
crunch_fib <- function() fib(15)
invisible(c(crunch_sums(), crunch_fib()))  # compiled before anyone samples
work <- function(which) {
  deadline <- proc.time()[[3]] + seconds
  while (proc.time()[[3]] < deadline) {
    for (i in 1:10) if (which == 1) crunch_sums() else crunch_fib()
  }
  which
}
path <- Sys.getenv("XRTOP_READY")
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
invisible(parallel::mclapply(1:2, work, mc.cores = 2))
