# Garbage-collector workload. Usage: Rscript gc.R MODE [SECONDS]
#   alloc: allocates all the time, so R collects garbage often;
#   quiet: a byte-compiled loop that allocates nothing (no collection for many seconds).
args <- commandArgs(trailingOnly = TRUE)
mode <- if (length(args)) args[[1]] else "alloc"
seconds <- if (length(args) > 1) as.numeric(args[[2]]) else 60
churn <- function() for (k in 1:50) x <- lapply(1:200, function(i) numeric(50))
count <- function(n) {
  i <- 0L
  while (i < n) i <- i + 1L
  i
}
path <- Sys.getenv("XRTOP_READY")
deadline <- Sys.time() + seconds
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
if (mode == "alloc") {
  while (Sys.time() < deadline) churn()
} else {
  while (Sys.time() < deadline) count(5000000L)
}
