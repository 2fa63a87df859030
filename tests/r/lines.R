# Line-profiling workload. It sources itself with keep.source = TRUE, so that its functions
# carry srcrefs as in an interactive session (Rscript keeps none by default).
# Usage: Rscript lines.R [SECONDS]
# With XRTOP_RPROF=FILE it profiles itself with R's own Rprof(line.profiling = TRUE) instead
# and exits after SECONDS: the ground truth for xrtop's line tokens.
if (!exists(".xrtop_sourced")) {
  .xrtop_sourced <- TRUE
  options(keep.source = TRUE)
  source(sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE)[1]))
  quit(save = "no")
}
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args)) as.numeric(args[[1]]) else 60

inner <- function(n) {
  s <- 0
  for (i in seq_len(n)) {
    s <- s + sqrt(i) * 2
  }
  s
}
middle <- function() {
  a <- inner(20000)
  b <- inner(10000)
  a + b
}
# A function whose srcfile is an unhashed environment (srcfile(), not srcfilecopy()).
helper <- eval(parse(
  text = c("function() {", "  z <- 0", "  for (j in 1:3000) z <- z + sqrt(j)", "  z", "}"),
  srcfile = srcfile("virtual.R"), keep.source = TRUE
)[[1]])
outer <- function() {
  x <- middle()
  helper()
  x
}

rprof <- Sys.getenv("XRTOP_RPROF")
if (nzchar(rprof)) Rprof(rprof, interval = 0.01, line.profiling = TRUE)
path <- Sys.getenv("XRTOP_READY")
deadline <- Sys.time() + seconds
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
while (Sys.time() < deadline) outer()
if (nzchar(rprof)) Rprof(NULL)
