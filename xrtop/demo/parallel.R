# xrtop's demo of parallel R: the parent splits the work over two forked mclapply workers,
# one simulating, one fitting a model, and waits for them.
# Usage: Rscript parallel.R [SECONDS]   (default 600; see xrtop.screenshots)
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args)) as.numeric(args[[1]]) else 600

fib <- function(n) if (n < 2) n else fib(n - 1) + fib(n - 2)

simulate <- function(n) {
  x <- numeric(n)
  for (i in seq_len(n)) x[i] <- sqrt(i) * sin(i)
  x
}

fit_model <- function() fib(18)

run_part <- function(part) {
  deadline <- Sys.time() + seconds
  while (Sys.time() < deadline) {
    if (part == "simulate") simulate(20000) else fit_model()
  }
  part
}

invisible(parallel::mclapply(c("simulate", "fit"), run_part, mc.cores = 2))
