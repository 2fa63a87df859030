# Deep recursion that stays put: a stack DEPTH frames deep, the same sample after sample.
# Usage: Rscript deep.R [SECONDS] [DEPTH]
# DEPTH by default: 2,500 from R 4.4 (beyond the 2 MB node-stack span xrtop copies), 300
# before (beyond the 1.25 MB C-stack span; a level takes up to 20 KB of the 8 MB C stack).
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args) >= 1) as.numeric(args[[1]]) else 60
depth <- if (length(args) >= 2) as.integer(args[[2]]) else if (getRversion() >= "4.4") 2500L else 300L
options(expressions = 500000)
spin <- function(n) {
  x <- 0
  for (i in seq_len(n)) x <- x + i
  x
}
ready <- function() {
  path <- Sys.getenv("XRTOP_READY")
  if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
}
# One `if` per level, no braces: each R call costs as little C stack as it can (before
# R 4.4 every call recurses in C; 1,200 levels must stay below the default 8 MB).
# With XRTOP_PROGRESS, each spin done appends "END_TIME 1" there (for bench/); it ends at
# its deadline, or once the file XRTOP_STOP names exists.
progress <- Sys.getenv("XRTOP_PROGRESS")
stop_file <- Sys.getenv("XRTOP_STOP")
down <- function(k, deadline) if (k > 0L) down(k - 1L, deadline) else {
  ready()
  while (Sys.time() < deadline && !(nzchar(stop_file) && file.exists(stop_file))) {
    spin(1e5)
    if (nzchar(progress)) cat(sprintf("%.6f 1\n", as.numeric(Sys.time())), file = progress, append = TRUE)
  }
  0
}
invisible(down(depth - 2L, Sys.time() + seconds))
