# A deterministic CPU-bound workload that writes a checksum of its results, so that a run
# under xrtop can be compared with an unprofiled one. Runs ITERATIONS steps, then writes
# the checksum to OUTFILE.
# Usage: Rscript checksum.R ITERATIONS OUTFILE
args <- commandArgs(trailingOnly = TRUE)
iterations <- as.integer(args[[1]])
outfile <- args[[2]]
step <- function(i) {
  x <- sin(seq_len(300) * i) * cos(i)
  y <- sort(x)
  sum(y * seq_along(y)) + length(unique(round(x, 3)))
}
acc <- 0
path <- Sys.getenv("XRTOP_READY")
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
for (i in seq_len(iterations)) acc <- (acc * 31 + step(i)) %% 1000003
writeLines(sprintf("checksum %.6f after %d steps", acc, iterations), outfile)
