# A CPU-bound workload: recursion under a named chain (outer -> middle -> fib).
# Usage: Rscript busy.R [SECONDS]
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args)) as.numeric(args[[1]]) else 60
fib <- function(n) if (n < 2) n else fib(n - 1) + fib(n - 2)
middle <- function() fib(15)
outer <- function() middle()
outer()  # let the byte-code compiler finish with these functions before anyone samples
path <- Sys.getenv("XRTOP_READY")
deadline <- Sys.time() + seconds
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
while (Sys.time() < deadline) outer()
