# xrtop's demo workload: a small "data pipeline" with a known split of work.
# Usage: Rscript demo.R [SECONDS]   (default 600; xrtop's `make demo` runs it)
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args)) as.numeric(args[[1]]) else 600

fib <- function(n) if (n < 2) n else fib(n - 1) + fib(n - 2)

simulate <- function(n) {
  x <- numeric(n)
  for (i in seq_len(n)) x[i] <- sqrt(i) * sin(i)
  x
}

clean_rows <- function(k) {
  rows <- lapply(seq_len(k), function(i) list(id = i, value = i %% 7))
  Filter(function(r) r$value > 2, rows)
}

summarise <- function(data) {
  stats::median(vapply(data, function(r) r$value, numeric(1)))
}

model <- list(fit = function() fib(18))

pipeline <- function() {
  simulate(20000)                 # loops: about a third
  rows <- clean_rows(3000)        # allocation-heavy lists: about a third
  summarise(rows)
  model$fit()                     # recursion: about a third
}

deadline <- Sys.time() + seconds
while (Sys.time() < deadline) pipeline()
