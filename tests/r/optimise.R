# One workload in two versions, profiled with R's own Rprof (for `xrtop diff`).
# Usage: Rscript optimise.R before|after OUT.out [STEPS]
# "before" fills a vector by growing it (grow: quadratic); "after" fills a preallocated
# one (prealloc), so clean() gets cheaper and fib's share grows.
args <- commandArgs(trailingOnly = TRUE)
version <- args[[1]]
out <- args[[2]]
steps <- if (length(args) > 2) as.integer(args[[3]]) else 40L
fib <- function(n) if (n < 2) n else fib(n - 1) + fib(n - 2)
grow <- function(n) {
  x <- c()
  for (i in seq_len(n)) x <- c(x, i)
  x
}
prealloc <- function(n) {
  x <- numeric(n)
  for (i in seq_len(n)) x[i] <- i
  x
}
clean <- function(n) if (version == "before") grow(n) else prealloc(n)
model <- function() fib(21)
report <- function(x) paste(format(sum(x)), collapse = "")
step <- function() {
  x <- clean(6000)
  model()
  report(x)
}
invisible(step())  # compile first
Rprof(out, interval = 0.005)
for (i in seq_len(steps)) step()
Rprof(NULL)
