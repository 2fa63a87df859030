# A CPU-bound workload: recursion under a named chain (outer -> middle -> fib).
# Usage: Rscript busy.R [SECONDS]
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args)) as.numeric(args[[1]]) else 60
fib <- function(n) if (n < 2) n else fib(n - 1) + fib(n - 2)
middle <- function() fib(15)
outer <- function() middle()
outer()  # let the byte-code compiler finish with these functions before anyone samples
path <- Sys.getenv("XRTOP_READY")
# The deadline is checked with primitives, and only every 20 calls: a check with Sys.time()
# runs R functions (Ops.POSIXt, check_tzones, unique) at top level, where a sample rightly
# shows none of the chain, often enough to be caught by a test's one dump.
deadline <- proc.time()[[3]] + seconds
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
while (proc.time()[[3]] < deadline) for (i in 1:20) outer()
