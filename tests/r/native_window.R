# Workloads for tests/test_native_window.py: C stacks deep enough for sparse copies
# (sampler.nativewindow) on every R version.
# Usage: Rscript native_window.R MODE
#   MODE inner: a fixed outer part (one activation of `outer` 80 calls deep, for the whole
#     run) under which the inner part changes sample after sample (work_a, work_b at
#     different depths, in C much of the time).
#   MODE outer: the outer part changes too: the same work under `outer` of a random depth
#     (20-70 calls), or under lapply's frames, anew every few milliseconds.
# Not compiled to byte code: each R call then takes C stack on every R version (from R 4.4
# byte code keeps closure calls off it), so the stack outgrows a sparse copy's inner window.
args <- commandArgs(trailingOnly = TRUE)
mode <- args[[1]]
invisible(compiler::enableJIT(0))
set.seed(1)
started <- FALSE
ready <- function() {
  if (started) return(invisible())
  started <<- TRUE
  path <- Sys.getenv("XRTOP_READY")
  if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
}
work_a <- function() sum(sort(runif(20000)))
work_b <- function() max(cumsum(rnorm(30000)))
down <- function(k, f) if (k > 0L) down(k - 1L, f) else f()
work <- function() {
  down(2L, work_a)
  down(6L, work_b)
}
outer <- function(k, bottom) if (k > 0L) outer(k - 1L, bottom) else bottom()
if (mode == "inner") {
  outer(80L, function() {
    ready()
    repeat work()
  })
} else {
  ready()
  repeat {
    depth <- sample(20:70, 1)
    if (depth %% 2L == 0L) {
      outer(depth, work)
    } else {
      lapply(1, function(i) outer(depth, work))
    }
  }
}
